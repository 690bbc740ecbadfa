"""Evaluate a checkpoint: ``python tools/test.py CONFIG CHECKPOINT [--out metrics.json]``.

``--baselines ST.json ...`` adds Δm against single-task metrics (``tools/train_single_task.py``
writes them); ``--show-dir DIR`` saves predictions and gate maps of a few images as PNG;
``--data CFG`` tests on the sources and metrics of another config, for the tasks the model
has heads for (e.g. an expanded model's old tasks on the data of the config it grew from).

torch is imported in ``main()`` after the config's ``type=`` names passed the torch-free check
(:func:`~modzoo.type_names.load_checked_config`), so a typo fails at once.
"""
import argparse
import json
import os
import os.path as osp

from mmengine.config import Config, DictAction

from modzoo.hub import resolve
from modzoo.type_names import load_checked_config


def parse_args():
    parser = argparse.ArgumentParser(description='Evaluate a modzoo model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and results')
    parser.add_argument('--out', help='write the metrics to this .json file (unlike mmpretrain, '
                                      'whose --out holds predictions: see --out-item)')
    parser.add_argument('--out-item', choices=['metrics', 'pred'], default='metrics',
                        help="what --out holds: 'metrics' (default) or the raw predictions "
                             "('pred', a .pkl file, as mmpretrain's --out)")
    parser.add_argument('--baselines', nargs='+', metavar='JSON',
                        help='single-task metrics files; adds Δm (in percent) to the output')
    parser.add_argument('--delta-m-keys', nargs='+', metavar='KEY',
                        help='metric keys Δm averages (default: the primary metric of each '
                             'test evaluator, e.g. semseg/mIoU depth/rmse)')
    parser.add_argument('--data', metavar='CONFIG',
                        help="test on this config's test data and metrics, for the tasks "
                             'the model has heads for')
    parser.add_argument('--show-dir', help='save inputs, predictions, ground truth and gate '
                                           'maps of a few test images as PNG here')
    parser.add_argument('--show-num', type=int, default=4,
                        help='images per test source that --show-dir saves')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. test_dataloader.batch_size=8')
    parser.add_argument('--amp', action='store_true', help='mixed precision inference')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if args.out and args.out_item == 'metrics' and not args.out.endswith('.json'):
        parser.error(f'--out must end in .json for metrics, got {args.out}')
    if args.delta_m_keys and not args.baselines:
        parser.error('--delta-m-keys needs --baselines')
    return args


def load_baselines(paths: list, keys: list) -> dict:
    """The single-task metrics of ``paths``, checked to hold every key Δm averages."""
    from modzoo.evaluation import load_metrics
    single = load_metrics(*paths)
    missing = [key for key in keys if key not in single]
    if missing:
        raise KeyError(f'--baselines {" ".join(paths)} lack the metric(s) {missing} that Δm '
                       f'averages; they have {sorted(single)}')
    return single


def delta_m_report(metrics: dict, single: dict, keys: list) -> dict:
    """``{'delta_m/<key>': relative gain of each key, 'delta_m': their mean}`` in percent, of
    the multi-task ``metrics`` against the single-task ones."""
    from modzoo.evaluation import delta_m, metric_directions
    directions = metric_directions(keys)
    report = {f'delta_m/{key}': delta_m(metrics, single, {key: higher})
              for key, higher in directions.items()}
    report['delta_m'] = delta_m(metrics, single, directions)
    return report


def merge_args(cfg, args):
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    cfg.launcher = args.launcher
    if args.amp:
        cfg.test_cfg = dict(cfg.get('test_cfg') or dict(type='TestLoop'), fp16=True)
    if args.data:
        if not cfg.model.get('heads'):
            raise SystemExit(f'--data: the model of {args.config} has no heads to choose the '
                             'tasks to test by')
        from modzoo.analysis import keep_task_data
        keep_task_data(cfg, list(cfg.model.heads), Config.fromfile(args.data), args.data,
                       splits=('test', ))
    if args.out and args.out_item == 'pred':
        cfg.test_evaluator = list(cfg.test_evaluator) if isinstance(
            cfg.test_evaluator, (list, tuple)) else [cfg.test_evaluator]
        cfg.test_evaluator.append(dict(type='DumpResults', out_file_path=args.out))
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def main():
    args = parse_args()
    args.checkpoint = resolve(args.checkpoint)  # a missing or mistyped checkpoint fails first
    cfg = load_checked_config(args, merge_args)
    from mmengine.runner import Runner

    from modzoo.engine import check_tasks, init_distributed, use_safe_checkpoints, write_atomic
    from modzoo.engine.visualization import show_dense_results
    from modzoo.evaluation import primary_metric_keys
    check_tasks(cfg)
    use_safe_checkpoints()
    init_distributed(cfg)
    if args.baselines:  # read before testing, so a bad file fails at once
        keys = args.delta_m_keys or primary_metric_keys(cfg.test_evaluator)
        single = load_baselines(args.baselines, keys)
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    if args.baselines:
        report = delta_m_report(metrics, single, keys)
        metrics.update(report)
        if runner.rank == 0:
            for key in keys:
                print(f'{key}: {metrics[key]:.4f} vs single-task {single[key]:.4f} '
                      f"({report[f'delta_m/{key}']:+.2f}%)")
            print(f"Δm: {report['delta_m']:+.2f}%")
    if args.show_dir and runner.rank == 0:
        written = show_dense_results(runner.model, runner.test_loop.dataloader.dataset,
                                     args.show_dir, args.show_num)
        print(f'{len(written)} images written to {args.show_dir}')
    if args.out and args.out_item == 'metrics' and runner.rank == 0:
        write_atomic(args.out, json.dumps(metrics, indent=2).encode())
        print(f'metrics written to {args.out}')


if __name__ == '__main__':
    main()
