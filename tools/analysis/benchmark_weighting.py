"""Training-step time of each multi-task weighting relative to EW, on a config's model.

``python tools/analysis/benchmark_weighting.py [CONFIG] --json`` (default CONFIG: the
TaskExpert-tiny NYUD-v2 SynthScenes config) prints one JSON line:

* ``step_s``: median time of one ``train_step`` (data preprocessing, forward, the method's
  backward passes, combination, Adam step) per method, on one fixed batch of the config's
  train data; all methods step the same model (one copy in memory), each with its own
  optim wrapper and weighting state;
* ``ratio_vs_ew``: median over rounds of (method step / EW step in the same round); the
  methods run round-robin, each round in a new order, so a noisy machine affects all alike;
* ``backward_passes``: backward passes per step (gradient methods: one per task, F-MTL twice
  that plus T forward passes; MGDA-UB one, after T passes from the losses to the backbone's
  output only). Each runs through the whole batch when one source labels every task; with one
  batch per source (``mode='all_sources'``) a task's pass runs through its own source's
  samples only, as ``MultiTaskModel`` runs the backbone once per source.
"""
import argparse
import copy
import json
import random
import statistics
import time

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from modzoo.registry import MODELS, WEIGHTINGS

DEFAULT_CONFIG = 'configs/weighting/taskexpert_vit-tiny-p8_synth-nyud_ew.py'
METHODS = ['EW', 'UW', 'DWA', 'RLW', 'GLS', 'FAMO', 'IMTLL', 'GradNorm', 'DBMTL', 'MGDA',
           'MGDAUB', 'PCGrad', 'GradVac', 'CAGrad', 'IMTLG', 'IMTL', 'NashMTL', 'AlignedMTL',
           'FMTL']


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', nargs='?', default=DEFAULT_CONFIG)
    parser.add_argument('--methods', nargs='+', default=METHODS)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--batch-size', type=int, help="default: the train dataloader's")
    parser.add_argument('--json', action='store_true', help='print only the JSON line')
    return parser.parse_args()


def one_batch(cfg, batch_size):
    loader_cfg = copy.deepcopy(cfg.train_dataloader)
    loader_cfg.update(num_workers=0, persistent_workers=False)
    if batch_size:
        loader_cfg.batch_size = batch_size
    return next(iter(Runner.build_dataloader(loader_cfg, seed=0)))


def backward_passes(weighting, num_tasks):
    if not weighting.needs_grads:
        return 1
    return 2 * num_tasks if getattr(weighting, 'perturbs', False) else num_tasks


def main():
    args = parse_args()
    torch.manual_seed(0)
    cfg = Config.fromfile(args.config)
    DefaultScope.get_instance('benchmark_weighting', scope_name='modzoo')
    batch = one_batch(cfg, args.batch_size)
    model = MODELS.build(cfg.model)
    model.train()
    runs = {}
    for name in dict.fromkeys(['EW'] + args.methods):
        optim_cfg = copy.deepcopy(cfg.optim_wrapper)
        optim_cfg.update(type='MultiTaskOptimWrapper', weighting=dict(type=name))
        optim = build_optim_wrapper(model, optim_cfg)
        runs[name] = optim
    times = {name: [] for name in runs}
    for _ in range(args.warmup):
        for optim in runs.values():
            model.train_step(batch, optim)
    order = list(runs)
    for round_idx in range(args.rounds):
        random.Random(round_idx).shuffle(order)
        for name in order:
            start = time.perf_counter()
            model.train_step(batch, runs[name])
            times[name].append(time.perf_counter() - start)
    num_tasks = len(model.tasks)
    result = dict(
        config=args.config, batch_size=len(batch['inputs']), tasks=list(model.tasks),
        rounds=args.rounds, threads=torch.get_num_threads(),
        step_s={n: round(statistics.median(t), 4) for n, t in times.items()},
        ratio_vs_ew={n: round(statistics.median(a / b for a, b in zip(t, times['EW'])), 3)
                     for n, t in times.items()},
        backward_passes={n: backward_passes(runs[n].weighting, num_tasks) for n in runs})
    if not args.json:
        for name in runs:
            print(f"{name:>10}: {result['step_s'][name]:.3f} s/step, "
                  f"{result['ratio_vs_ew'][name]:.2f} x EW, "
                  f"{result['backward_passes'][name]} backward")
    print(json.dumps(result))


if __name__ == '__main__':
    WEIGHTINGS.import_from_location()
    main()
