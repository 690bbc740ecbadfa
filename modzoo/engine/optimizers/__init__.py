"""Optimizers, optimizer wrappers and optimizer wrapper constructors."""
from .bf16_optim_wrapper import BF16OptimWrapper, amp_optim_wrapper, bf16_support
from .layer_decay_constructor import LayerDecayOptimWrapperConstructor, layer_ids
from .tbgn import TBGNAdamW

__all__ = ['BF16OptimWrapper', 'amp_optim_wrapper', 'bf16_support',
           'LayerDecayOptimWrapperConstructor', 'layer_ids', 'TBGNAdamW']
