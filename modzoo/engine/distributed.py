"""Distributed training with or without CUDA (mmengine 0.10.7).

mmengine's ``init_dist('pytorch')`` calls ``torch.cuda.set_device`` and its Runner wraps the model
with ``device_ids=[LOCAL_RANK]``, so ``--launcher pytorch`` fails on a CPU-only machine. modzoo
starts the process group itself before the Runner is built (the Runner then skips its own init)
and wraps the model with :class:`CPUAwareDistributedDataParallel`::

    cfg.launcher = args.launcher
    init_distributed(cfg)  # also sets cfg.model_wrapper_cfg unless the config has one
    runner = Runner.from_cfg(cfg)
"""
import datetime
import os
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.dist import init_dist, is_distributed
from mmengine.model import MMDistributedDataParallel

from modzoo.registry import MODEL_WRAPPERS

# Set by torchrun (and torch.distributed.launch) for each process.
_TORCHRUN_ENV = ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')


@MODEL_WRAPPERS.register_module()
class CPUAwareDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that also wraps a module whose parameters are on the CPU.

    The Runner passes ``device_ids=[LOCAL_RANK]``; DDP accepts ``device_ids`` for single-device
    GPU modules only, so they are dropped for a CPU module. Other arguments go to
    ``MMDistributedDataParallel``.
    """

    def __init__(self, module: torch.nn.Module, device_ids: Optional[list] = None, **kwargs):
        if all(param.device.type == 'cpu' for param in module.parameters()):
            device_ids = None
        super().__init__(module=module, device_ids=device_ids, **kwargs)

    def train_step(self, data, optim_wrapper):
        """A :class:`MultiTaskOptimWrapper` runs the whole step (it needs the task losses
        before they are summed); any other wrapper takes mmengine's."""
        if hasattr(optim_wrapper, 'multi_task_step'):
            return optim_wrapper.multi_task_step(self, data)
        return super().train_step(data, optim_wrapper)


def init_distributed(cfg) -> None:
    """Start the process group that ``cfg.launcher`` asks for; call before ``Runner.from_cfg``.

    Launchers: 'none' (nothing to do), 'pytorch', 'slurm', 'mpi'. With CUDA this is mmengine's
    ``init_dist(launcher, **cfg.env_cfg.dist_cfg)``. Without CUDA only 'pytorch' (torchrun) is
    supported: a gloo group is built from the torchrun environment variables; the ``backend`` in
    ``dist_cfg`` is ignored and its ``timeout`` (seconds) honoured. For a distributed launcher
    ``cfg.model_wrapper_cfg`` defaults to :func:`ddp_wrapper_cfg`, so that the Runner, which skips
    its own init once a group exists, wraps the model with CPUAwareDistributedDataParallel.

    Args:
        cfg: the run's config (mmengine ``Config`` or dict); ``model_wrapper_cfg`` may be set.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none':
        return
    if cfg.get('model_wrapper_cfg') is None:
        cfg['model_wrapper_cfg'] = ddp_wrapper_cfg(cfg.get('find_unused_parameters', False))
    if is_distributed():
        return
    dist_cfg = dict((cfg.get('env_cfg') or {}).get('dist_cfg') or {})
    if torch.cuda.is_available():
        init_dist(launcher, **dist_cfg)
        return
    if launcher != 'pytorch':
        raise ValueError(f"launcher '{launcher}' needs CUDA; on a machine without CUDA start "
                         'the processes with torchrun and use --launcher pytorch')
    missing = [name for name in _TORCHRUN_ENV if name not in os.environ]
    if missing:
        raise RuntimeError(f'--launcher pytorch expects the environment variables that torchrun '
                           f'sets, but {", ".join(missing)} are not set; start with: torchrun '
                           '--nproc_per_node=N tools/train.py CONFIG --launcher pytorch')
    timeout = dist_cfg.get('timeout')
    kwargs = {} if timeout is None else dict(timeout=datetime.timedelta(seconds=timeout))
    torch_dist.init_process_group(backend='gloo', **kwargs)


def ddp_wrapper_cfg(find_unused_parameters: bool = False) -> dict:
    """The ``model_wrapper_cfg`` for distributed runs, on CPU (gloo) or GPU (nccl).

    ``broadcast_buffers=False`` as in mmengine's default wrapper. The type carries the scope
    because the Runner looks it up in mmengine's root registry, which does not search children.
    """
    return dict(type='modzoo.CPUAwareDistributedDataParallel',
                broadcast_buffers=False,
                find_unused_parameters=find_unused_parameters)
