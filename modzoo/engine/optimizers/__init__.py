"""Optimizers, optimizer wrappers (bf16, multi-task) and optimizer wrapper constructors."""
from .bf16_optim_wrapper import BF16OptimWrapper, amp_optim_wrapper, bf16_support, use_amp
from .layer_decay_constructor import LayerDecayOptimWrapperConstructor, layer_ids
from .multi_task_optim_wrapper import (BF16MultiTaskOptimWrapper, MultiTaskOptimWrapper,
                                       check_weighting_sampler, check_weighting_strategy)
from .tbgn import TBGNAdamW

__all__ = ['BF16OptimWrapper', 'amp_optim_wrapper', 'bf16_support', 'use_amp',
           'LayerDecayOptimWrapperConstructor', 'layer_ids', 'TBGNAdamW', 'MultiTaskOptimWrapper',
           'BF16MultiTaskOptimWrapper', 'check_weighting_sampler', 'check_weighting_strategy']
