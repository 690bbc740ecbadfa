"""Inference speed of one task of a config: PyTorch eager, ``torch.compile`` and onnxruntime.

    python tools/analysis/benchmark_inference.py CONFIG [--ckpt CKPT] [--task NAME]
        [--extract [--keep-top-k | --thresh T] [--usage-rule {ema,total}]]
        [--batch-sizes 1 32] [--repeats 5] [--threads N] [--clock wall|process] [--json]

Models timed (each as ``modzoo.deploy.TaskPredictor``: images in, prediction out):

* ``model``: the config's model;
* with ``--extract`` (a MoE config): ``extracted``, the task's sub-network
  (``modzoo.analysis.extract_task``, experts selected by the usage counts of the checkpoint,
  or of a few random batches without one, with ``tools/extract.py``'s rules: ``--thresh``,
  ``--usage-rule``, ``--keep-top-k``), and ``dense``, the dense ViT of the same widths
  and depth with the same head: the model of the same active size per token. The JSON gives
  ``extracted_vs_dense``: the median over rounds of the speed ratio extracted / dense, both
  timed in the same round (>= 1: not slower).

Backends: ``eager`` (the sort-based MoE dispatch; a layer of k experts runs every expert
without dispatch), ``compile`` (``torch.compile`` of eager; a backend that fails is reported
with its error) and ``onnxruntime`` (the ONNX export, with the export-friendly MoE forward).
Every (model, backend, batch) is timed ``--repeats`` times in interleaved rounds and its
median kept, so that load on a shared machine hits all alike (``--clock process`` counts CPU
time instead of wall time). Prints one JSON line:
``images_per_s[model][backend][batch]`` (the exporter's progress goes to stderr).
"""
import argparse
import contextlib
import json
import os.path as osp
import statistics
import sys
import tempfile
import time

import torch
from mmengine.config import Config

from modzoo.analysis import extract_task
from modzoo.analysis.extraction import USAGE_RULES
from modzoo.deploy import TaskPredictor, export_onnx
from modzoo.models.layers.moe_export import set_export_dispatch
from modzoo.registry import MODELS
from modzoo.zoo import init_model


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--ckpt', help='weights (default: as initialised)')
    parser.add_argument('--task', help='task to predict (default: the first head)')
    parser.add_argument('--extract', action='store_true',
                        help='also time the extracted task model and its dense twin (MoE)')
    parser.add_argument('--keep-top-k', action='store_true',
                        help='extract each layer\'s k most used experts (tools/extract.py)')
    parser.add_argument('--thresh', type=float, default=3.0,
                        help='extraction threshold (tools/extract.py)')
    parser.add_argument('--usage-rule', choices=USAGE_RULES, default='ema',
                        help='usage buffer to extract by (tools/extract.py)')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 32])
    parser.add_argument('--backends', nargs='+', default=['eager', 'compile', 'onnxruntime'],
                        choices=['eager', 'compile', 'onnxruntime'])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--clock', choices=['wall', 'process'], default='wall',
                        help='time in wall seconds or in CPU seconds of this process (with '
                             'one thread, less inflated by the other jobs of a busy machine)')
    parser.add_argument('--json', action='store_true', help='print the JSON line only')
    return parser.parse_args(argv)


def extracted_and_dense(model, task, size, **extract_args):
    """The ``task`` sub-network of the MoE ``model`` (``extract_args`` of
    :func:`extract_task`), its experts kept per layer, and the dense ViT twin of its
    backbone."""
    if not hasattr(model.backbone, 'moe_layers'):
        raise SystemExit(f'--extract needs a MoE backbone, got {type(model.backbone).__name__}')
    if model.backbone.moe_layers()[0][1].router.usage.sum() == 0:
        with torch.no_grad():  # usage counts to select the experts by
            model._task_features(torch.rand(8, 3, *size), (task, ))
    cfg, state, kept = extract_task(model, model.cfg, task, **extract_args)
    extracted = MODELS.build(cfg.model).eval()
    extracted.load_state_dict(state)
    dense_cfg = cfg.model.copy()
    backbone = model.backbone
    dense_cfg.backbone = dict(type='ViT', arch=backbone.dense_arch,
                              **{k: v for k, v in backbone.vit_kwargs.items()
                                 if k != 'drop_path_rate'})
    dense = MODELS.build(dense_cfg).eval()
    return extracted, {name: len(experts) for name, experts in kept.items()}, dense


def runners(predictor, backend, images, tmp_dir):
    """A callable running ``predictor`` with ``backend`` on ``images``, or the error text."""
    if backend == 'eager':
        set_export_dispatch(predictor.model, False)
        return lambda x: predictor(x)
    if backend == 'compile':
        set_export_dispatch(predictor.model, False)
        compiled = torch.compile(predictor)
        compiled(images)  # compile now, not in the timed runs
        return compiled
    import onnxruntime
    path = osp.join(tmp_dir, f'{id(predictor)}.onnx')
    set_export_dispatch(predictor.model, True)
    export_onnx(predictor, images, path)
    set_export_dispatch(predictor.model, False)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    return lambda x: session.run(None, {'images': x.numpy()})


def benchmark(predictors, backends, batch_sizes, size, repeats, clock=time.perf_counter):
    """``({model: {backend: {batch: images/s or error}}}, {(model, backend, batch): [seconds
    of each round]})``: every run once per round, speeds are the medians over rounds."""
    results, runs = {}, []
    with tempfile.TemporaryDirectory() as tmp_dir, torch.no_grad():
        for name, predictor in predictors.items():
            for backend in backends:
                try:
                    with contextlib.redirect_stdout(sys.stderr):  # the exporter's progress
                        run = runners(predictor, backend, torch.rand(2, 3, *size) * 255,
                                      tmp_dir)
                except Exception as error:  # a backend that does not work here is reported
                    results.setdefault(name, {})[backend] = \
                        f'failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}'
                    continue
                for batch in batch_sizes:
                    images = torch.rand(batch, 3, *size) * 255
                    run(images)  # warm-up
                    runs.append((name, backend, batch, run, images, []))
        for _ in range(repeats):
            for name, backend, batch, run, images, times in runs:
                start = clock()
                run(images)
                times.append(clock() - start)
    for name, backend, batch, _, _, times in runs:
        results.setdefault(name, {}).setdefault(backend, {})[batch] = round(
            batch / statistics.median(times), 2)
    return results, {run[:3]: run[-1] for run in runs}


def round_ratios(times, backend, batch):
    """Median over rounds of dense seconds / extracted seconds (the speed ratio) of the runs
    timed next to each other in each round."""
    pairs = zip(times[('dense', backend, batch)], times[('extracted', backend, batch)])
    return round(statistics.median(dense / extracted for dense, extracted in pairs), 3)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model = init_model(Config.fromfile(args.config), args.ckpt)
    task = args.task or next(iter(model.heads))
    size = model.backbone.patch_embed.img_size
    predictors = {'model': TaskPredictor(model, task)}
    if args.extract:
        extracted, kept, dense = extracted_and_dense(
            model, task, size, thresh=args.thresh, rule=args.usage_rule,
            keep_top_k=args.keep_top_k)
        predictors.update(extracted=TaskPredictor(extracted, task),
                          dense=TaskPredictor(dense, task))
    torch.manual_seed(0)
    clock = time.process_time if args.clock == 'process' else time.perf_counter
    speeds, times = benchmark(predictors, args.backends, args.batch_sizes, size, args.repeats,
                              clock)
    result = dict(config=args.config, task=task, input=list(size), threads=args.threads,
                  repeats=args.repeats, clock=args.clock, images_per_s=speeds)
    if args.extract:
        result['extracted_vs_dense'] = {
            backend: {batch: round_ratios(times, backend, batch) for batch in args.batch_sizes}
            for backend in args.backends
            if isinstance(speeds['extracted'].get(backend), dict)
            and isinstance(speeds['dense'].get(backend), dict)}
        result['extraction'] = dict(keep_top_k=args.keep_top_k, thresh=args.thresh,
                                    usage_rule=args.usage_rule, kept_experts=kept)
        result['parameters'] = {name: sum(p.numel() for p in p_.model.parameters())
                                for name, p_ in predictors.items()}
    print(json.dumps(result))
    return result


if __name__ == '__main__':
    main()
