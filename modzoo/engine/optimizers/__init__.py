"""Optimizers and optimizer wrapper constructors."""
from .layer_decay_constructor import LayerDecayOptimWrapperConstructor, layer_ids
from .tbgn import TBGNAdamW

__all__ = ['LayerDecayOptimWrapperConstructor', 'layer_ids', 'TBGNAdamW']
