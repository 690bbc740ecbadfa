from .checkpoint import (AtomicLocalBackend, SafeCheckpointHook, UnsafeCheckpointError,
                         load_from_local, save_checkpoint_atomic, write_atomic)
from .distributed import CPUAwareDistributedDataParallel, ddp_wrapper_cfg, init_distributed
from .hooks import RandomStateHook
from .task_check import check_tasks

__all__ = [
    'AtomicLocalBackend', 'SafeCheckpointHook', 'UnsafeCheckpointError', 'load_from_local',
    'save_checkpoint_atomic', 'write_atomic', 'CPUAwareDistributedDataParallel',
    'ddp_wrapper_cfg', 'init_distributed', 'RandomStateHook', 'check_tasks'
]
