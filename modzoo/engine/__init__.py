from .checkpoint import (AtomicLocalBackend, SafeCheckpointHook, UnsafeCheckpointError,
                         load_from_local, save_checkpoint_atomic, use_safe_checkpoints,
                         write_atomic)
from .distributed import CPUAwareDistributedDataParallel, ddp_wrapper_cfg, init_distributed
from .freeze import FreezeOptimWrapperConstructor, freeze, parameter_counts
from .fsdp import FullyShardedModel, fsdp_wrapper_cfg
from .hooks import RandomStateHook, SampledTaskHook
from .loops import IncrementalLoop, IncrementalTestLoop
from .optimizers import (LayerDecayOptimWrapperConstructor, MultiTaskOptimWrapper, TBGNAdamW,
                         check_weighting_sampler, check_weighting_strategy)
from .task_check import check_tasks
from .task_visualizer import TaskVisualizer
from .type_check import UnknownTypeError, check_types

__all__ = [
    'AtomicLocalBackend', 'SafeCheckpointHook', 'UnsafeCheckpointError', 'load_from_local',
    'save_checkpoint_atomic', 'use_safe_checkpoints', 'write_atomic',
    'CPUAwareDistributedDataParallel', 'ddp_wrapper_cfg', 'init_distributed', 'RandomStateHook',
    'FullyShardedModel', 'fsdp_wrapper_cfg',
    'check_tasks', 'check_types', 'UnknownTypeError', 'FreezeOptimWrapperConstructor', 'freeze',
    'parameter_counts', 'LayerDecayOptimWrapperConstructor', 'IncrementalLoop',
    'IncrementalTestLoop', 'SampledTaskHook', 'TBGNAdamW', 'MultiTaskOptimWrapper',
    'check_weighting_sampler', 'check_weighting_strategy', 'TaskVisualizer'
]
