"""Train the single-task baselines of a multi-task config and write their metrics for Δm.

    python tools/train_single_task.py CONFIG [--tasks semseg depth] [--work-dir DIR]

Each task of ``model.heads`` gets the same config cut down to that task (``single_task_config``):
the same backbone, data pipeline, schedule and metric, with only its head, its loss weight, the
dataset sources that label it and, when the neck takes ``tasks``, a neck for it alone. It is
trained, tested with its final weights, and its metrics go to ``DIR/<task>/metrics.json``;
``DIR/single_task_metrics.json`` merges the metrics of every task trained so far. Then::

    python tools/test.py MT_CONFIG MT_CHECKPOINT --baselines DIR/single_task_metrics.json

prints the multi-task model's Δm against them.

torch is imported in ``main()`` after the config's ``type=`` names passed the torch-free check
(:func:`~modzoo.type_names.load_checked_config`), so a typo fails at once.
"""
import argparse
import copy
import json
import os
import os.path as osp

from mmengine.config import Config, DictAction

from modzoo.type_names import load_checked_config

MERGED = 'single_task_metrics.json'


def parse_args():
    parser = argparse.ArgumentParser(description='Train the single-task baselines of a '
                                                 'multi-task config')
    parser.add_argument('config', help='multi-task config file path')
    parser.add_argument('--tasks', nargs='+', help='tasks to train (default: every head)')
    parser.add_argument('--work-dir', help='the dir to save each task run and the metrics '
                                           '(default: work_dirs/<config>_single_task)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the multi-task config before it is cut down')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def single_task_config(cfg: Config, task: str) -> Config:
    """A copy of the multi-task ``cfg`` that trains and evaluates ``task`` alone."""
    from modzoo.analysis import keep_task_data
    from modzoo.engine import check_tasks
    heads = cfg.model.get('heads') or {}
    if task not in heads:
        raise KeyError(f"single_task_config: task '{task}' has no head in model.heads; "
                       f'tasks: {list(heads)}')
    cfg = copy.deepcopy(cfg)
    cfg.model.heads = {task: heads[task]}
    if cfg.model.get('loss_weights'):
        cfg.model.loss_weights = {t: w for t, w in cfg.model.loss_weights.items() if t == task}
    if cfg.model.get('neck') and 'tasks' in cfg.model.neck:
        cfg.model.neck.tasks = [task]
    keep_task_data(cfg, [task])
    check_tasks(cfg)
    return cfg


def merge_metrics(work_dir: str, tasks) -> dict:
    """The metrics of every task in ``tasks`` that has ``work_dir/<task>/metrics.json``."""
    merged = {}
    for task in tasks:
        path = osp.join(work_dir, task, 'metrics.json')
        if osp.isfile(path):
            with open(path) as f:
                merged.update(json.load(f))
    return merged


def merge_args(cfg, args):
    """Apply the command line to the multi-task config."""
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    return cfg


def main():
    args = parse_args()
    cfg = load_checked_config(args, merge_args)
    from mmengine.runner import Runner

    from modzoo.engine import init_distributed, use_safe_checkpoints, write_atomic
    from modzoo.engine.cpu_memory import apply_env_cfg
    stem = osp.splitext(osp.basename(args.config))[0]
    work_dir = args.work_dir or osp.join('./work_dirs', f'{stem}_single_task')
    all_tasks = list(cfg.model.heads)
    tasks = args.tasks or all_tasks
    configs = {task: single_task_config(cfg, task) for task in tasks}  # fail before training
    use_safe_checkpoints()
    apply_env_cfg(cfg)
    init_distributed(cfg)
    for task, task_cfg in configs.items():
        task_cfg.work_dir = osp.join(work_dir, task)
        task_cfg.experiment_name = f'{stem}_{task}'  # the Runner appends a timestamp
        task_cfg.launcher, task_cfg.model_wrapper_cfg = cfg.launcher, cfg.get('model_wrapper_cfg')
        runner = Runner.from_cfg(task_cfg)
        runner.train()
        metrics = runner.test()
        if runner.rank == 0:
            write_atomic(osp.join(task_cfg.work_dir, 'metrics.json'),
                         json.dumps(metrics, indent=2).encode())
            merged = merge_metrics(work_dir, all_tasks)
            write_atomic(osp.join(work_dir, MERGED), json.dumps(merged, indent=2).encode())
            print(f"single-task '{task}': {metrics}; all tasks so far in "
                  f'{osp.join(work_dir, MERGED)}')


if __name__ == '__main__':
    main()
