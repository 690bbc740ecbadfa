"""Add a task to a multi-task MoE model: new experts and router rows, the old tasks frozen.

    python tools/expand.py CONFIG CKPT --task NAME --head type=HEAD key=value ... \
        --out DIR [--data DATA_CONFIG] [--new-experts 2]

Every MoE layer gets ``--new-experts`` experts, copies of its most used ones, and the new
task its own router rows (``modzoo.analysis.expand_model``). The written config trains the
new task only, on the ``MultiTaskDataset`` sources of DATA_CONFIG (default: CONFIG) that
label it, with its evaluators; the old tasks keep routing among the old experts, which stay
frozen, so their predictions do not change. Writes ``DIR/<config>_<task>.pth`` and
``DIR/<config>_<task>.py`` (``load_from`` the new checkpoint; the new head starts from its
init). Train with ``python tools/train.py DIR/<config>_<task>.py``.
"""
import argparse
import os.path as osp

from mmengine.config import Config, DictAction

from modzoo.analysis import count_params, expand_model, keep_task_data
from modzoo.engine import check_tasks, save_checkpoint_atomic, write_atomic
from modzoo.registry import MODELS
from modzoo.weights import load_weights


def parse_args():
    parser = argparse.ArgumentParser(description='Add a task to a multi-task MoE model')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--task', required=True, help='the new task')
    parser.add_argument('--head', nargs='+', action=DictAction, required=True,
                        help='the new head config as key=value pairs, type included')
    parser.add_argument('--out', required=True, help='folder for the config and checkpoint')
    parser.add_argument('--data', help='a config whose data and evaluators label the new task '
                                       '(default: CONFIG)')
    parser.add_argument('--new-experts', type=int, default=2,
                        help='experts added to every MoE layer')
    return parser.parse_args()


def main():
    args = parse_args()
    if 'type' not in args.head:
        raise SystemExit(f'--head {args.head} has no type=...: name the head class '
                         '(e.g. type=MultiLabelClsHead)')
    cfg = Config.fromfile(args.config)
    model = MODELS.build(cfg.model)
    load_weights(model, args.checkpoint)
    new_cfg, state = expand_model(model, cfg, args.task, dict(args.head), args.new_experts)
    data_path = args.data or args.config
    keep_task_data(new_cfg, [args.task], Config.fromfile(data_path), data_path)

    name = f'{osp.splitext(osp.basename(args.config))[0]}_{args.task}'
    ckpt_path = osp.join(args.out, f'{name}.pth')
    new_cfg.load_from = ckpt_path
    check_tasks(new_cfg)
    grown = MODELS.build(new_cfg.model)
    missing, unexpected = grown.load_state_dict(state, strict=False)
    if unexpected or any(not key.startswith(f'heads.{args.task}.') for key in missing):
        raise RuntimeError(f'the expanded model does not match its checkpoint: missing '
                           f'{missing}, unexpected {unexpected}')
    meta = dict(source_config=args.config, source_checkpoint=args.checkpoint, task=args.task,
                new_experts=args.new_experts)
    save_checkpoint_atomic(dict(state_dict=state, meta=meta), ckpt_path)
    write_atomic(osp.join(args.out, f'{name}.py'), new_cfg.pretty_text.encode())
    trainable = (grown.backbone.num_trainable_params()
                 + count_params(grown.heads[args.task]))
    print(f'params {count_params(model) / 1e6:.3f} M -> {count_params(grown) / 1e6:.3f} M; '
          f'training {args.task} trains {trainable:,} (its experts, router rows and head)')
    print(f'wrote {osp.join(args.out, name)}.py and .pth')


if __name__ == '__main__':
    main()
