"""Optimizer wrapper constructors."""
from .layer_decay_constructor import LayerDecayOptimWrapperConstructor, layer_ids

__all__ = ['LayerDecayOptimWrapperConstructor', 'layer_ids']
