"""Train a model from a config: ``python tools/train.py CONFIG [--work-dir DIR] ...``.

Distributed: ``torchrun --nproc_per_node=N tools/train.py CONFIG --launcher pytorch``
(gloo on CPU, nccl on CUDA).

torch is imported in ``main()`` after the config's ``type=`` names passed the torch-free check
(:func:`~modzoo.type_names.load_checked_config`), so a typo fails at once.
"""
import argparse
import os
import os.path as osp

from mmengine.config import DictAction

from modzoo.type_names import load_checked_config


def parse_args():
    parser = argparse.ArgumentParser(description='Train a modzoo model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from the given checkpoint, or from the latest one in '
                             'the work dir when no path is given')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision training: bf16 autocast on a CPU or GPU that has '
                             'bf16, fp16 with dynamic loss scaling on an older GPU')
    parser.add_argument('--no-validate', action='store_true',
                        help='do not evaluate checkpoints during training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by world_size * batch_size / base_batch_size')
    parser.add_argument('--no-pin-memory', action='store_true',
                        help='do not pin memory in the dataloaders')
    parser.add_argument('--no-persistent-workers', action='store_true',
                        help='do not keep dataloader workers alive between epochs')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. optim_wrapper.optimizer.lr=0.1 '
                             'or key="[a,b]" for lists')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--strategy', choices=['ddp', 'fsdp'],
                        help="distributed strategy with --launcher: 'ddp' (the default) or "
                             "'fsdp' (parameters, gradients and optimizer state sharded with "
                             'FSDP2); a model_wrapper_cfg in the config wins')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg, args):
    """Apply the command line to the config."""
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader')
        if loader is None:
            continue
        if args.no_pin_memory:
            loader.pin_memory = False
        if args.no_persistent_workers:
            loader.persistent_workers = False
    cfg.launcher = args.launcher
    if args.strategy == 'fsdp':
        if args.launcher == 'none':
            raise SystemExit('--strategy fsdp shards the model over processes: start with '
                             'torchrun --nproc_per_node=N tools/train.py CONFIG --launcher pytorch')
        if cfg.get('model_wrapper_cfg') is None:
            from modzoo.engine import fsdp_wrapper_cfg
            cfg.model_wrapper_cfg = fsdp_wrapper_cfg()
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.amp:
        from modzoo.engine.optimizers import use_amp
        use_amp(cfg, args.config)
    return cfg


def main():
    args = parse_args()
    cfg = load_checked_config(args, merge_args)
    from mmengine.runner import Runner

    from modzoo.engine import (check_tasks, check_weighting_sampler, check_weighting_strategy,
                               init_distributed, use_safe_checkpoints)
    from modzoo.engine.cpu_memory import apply_env_cfg
    check_tasks(cfg)
    check_weighting_sampler(cfg)
    check_weighting_strategy(cfg)
    use_safe_checkpoints()
    apply_env_cfg(cfg)
    init_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    main()
