"""Extract one task's expert sub-network from a multi-task MoE model (Mod-Squad ``pruning``).

    python tools/extract.py CONFIG CKPT --task NAME --out DIR [--usage JSON]
        [--usage-rule {ema,total}] [--thresh 3 | --keep-top-k]

Per MoE layer the task keeps the experts whose share of its routing choices exceeds
``thresh / k`` percent (at least its k most used; ``modzoo.analysis.select_experts``),
counted by the routers' usage buffers saved in CKPT (``--usage-rule``) or read from an
``expert_usage_*.json`` of ``ExpertUsageHook`` (``--usage``); with ``--keep-top-k`` exactly
its k most used (each MoE layer then runs as a dense layer of the active size). Writes
``DIR/<config>_<task>.pth`` and ``DIR/<config>_<task>.py`` (the one-task model, its data and
metric, ``load_from`` the new checkpoint), and prints total params, the task's active params
and GFLOPs before and after. Evaluate the result with
``python tools/test.py DIR/<config>_<task>.py DIR/<config>_<task>.pth``. A checked-in config
needs no written file: the source config cut to the task (backbone ``tasks``, head, data,
metric) with ``model.backbone.experts_from`` and ``load_from`` set to the checkpoint (a path,
or ``modzoo://NAME`` when DIR is ``work_dirs/NAME``) builds the same sub-network, as
``configs/finetune/moe-vit-tiny_synth_hetero_extract-cls.py`` does.
"""
import argparse
import json
import os.path as osp

import torch
from mmengine.config import Config

from modzoo.analysis import extract_task, model_summary
from modzoo.analysis.extraction import USAGE_RULES
from modzoo.engine import check_tasks, save_checkpoint_atomic, write_atomic
from modzoo.registry import MODELS
from modzoo.weights import load_weights


def parse_args():
    parser = argparse.ArgumentParser(description='Extract one task\'s expert sub-network')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--task', required=True, help='the task to keep')
    parser.add_argument('--out', required=True, help='folder for the config and checkpoint')
    parser.add_argument('--usage', help='an expert_usage_*.json to select experts by '
                                        '(default: the usage buffers in the checkpoint)')
    parser.add_argument('--usage-rule', choices=USAGE_RULES, default='ema',
                        help='which usage buffer of the checkpoint: ema (default, Mod-Squad\'s '
                             'rule: a 0.95 moving average of each task\'s last passes, so the '
                             'experts the trained routers pick) or total (every token since '
                             'the model was built; its early, near-uniform routing keeps '
                             'experts the trained routers no longer use)')
    parser.add_argument('--thresh', type=float, default=3.0,
                        help='keep experts above thresh / k percent of the routing choices')
    parser.add_argument('--keep-top-k', action='store_true',
                        help='keep exactly the k most used experts of each layer (k: its top-k): '
                             'every token then uses every kept expert, so each MoE layer runs '
                             'as a dense layer of the active size, without dispatch; tokens '
                             'that chose a removed expert are routed among the kept ones')
    return parser.parse_args()


def read_usage(path: str) -> dict:
    """``{layer name: counts [T, E]}`` of an ``ExpertUsageHook`` JSON file."""
    with open(path) as f:
        report = json.load(f)
    if 'layers' not in report:
        raise KeyError(f"{path} is not an expert usage file: it has no 'layers' key")
    return {name: torch.tensor(layer['counts']) for name, layer in report['layers'].items()}


def summary_line(title: str, model, task: str, img_size) -> str:
    summary = model_summary(model, img_size, [task])
    stats = summary['tasks'][task]
    return (f'{title:<10} params {summary["params"] / 1e6:8.3f} M   active params ({task}) '
            f'{stats["active_params"] / 1e6:8.3f} M   GFLOPs {stats["gflops"]:.4f}')


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    model = MODELS.build(cfg.model)
    load_weights(model, args.checkpoint)
    img_size = model.backbone.patch_embed.img_size
    usage = read_usage(args.usage) if args.usage else None
    before = summary_line('full', model, args.task, img_size)

    sub_cfg, state, kept = extract_task(model, cfg, args.task, usage, args.thresh,
                                        args.usage_rule, args.keep_top_k)
    name = f'{osp.splitext(osp.basename(args.config))[0]}_{args.task}'
    ckpt_path = osp.join(args.out, f'{name}.pth')
    sub_cfg.load_from = ckpt_path
    check_tasks(sub_cfg)
    sub_model = MODELS.build(sub_cfg.model)
    sub_model.load_state_dict(state, strict=True)
    after = summary_line('extracted', sub_model, args.task, img_size)

    meta = dict(source_config=args.config, source_checkpoint=args.checkpoint, task=args.task,
                thresh=args.thresh, keep_top_k=args.keep_top_k,
                usage=args.usage or args.usage_rule, kept_experts=kept)
    save_checkpoint_atomic(dict(state_dict=state, meta=meta), ckpt_path)
    write_atomic(osp.join(args.out, f'{name}.py'), sub_cfg.pretty_text.encode())
    for layer, experts in kept.items():
        print(f'{layer}: kept {len(experts)} experts {experts}')
    print(before)
    print(after)
    print(f'wrote {osp.join(args.out, name)}.py and .pth')


if __name__ == '__main__':
    main()
