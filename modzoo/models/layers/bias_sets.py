"""Task-specific bias sets (Chameleon / VTM "bias tuning").

A layer with ``n_sets > 0`` keeps its bias as a table ``[n_sets, dim]`` and adds, to each
sample, the row its task index selects; the weights stay shared. With ``n_sets = 0`` it is
the plain layer. A plain 1-D bias (e.g. from a timm checkpoint) loads into every row.

The task index is passed to ``forward`` (``BiasSetBEiT``), or set for a whole pass with
``bias_set_index`` (``add_bias_sets`` turns the plain layers of a timm model, whose blocks
call ``layer(x)``, into bias-set layers that read it).
"""
import contextlib
import contextvars
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

_INDEX = contextvars.ContextVar('bias_set_index', default=None)


@contextlib.contextmanager
def bias_set_index(idx: Optional[torch.Tensor]):
    """Inside, bias-set layers called without an index use ``idx`` [B] (one row per sample)."""
    token = _INDEX.set(idx)
    try:
        yield
    finally:
        _INDEX.reset(token)


def keep_bias_set_index(function: Callable) -> Callable:
    """``function`` run with the bias-set index current now, also when it is called later
    (activation checkpointing recomputes a block in the backward pass)."""
    idx = _INDEX.get()

    def run(*args, **kwargs):
        with bias_set_index(idx):
            return function(*args, **kwargs)
    return run


def select_bias(bias: torch.Tensor, idx: Optional[torch.Tensor], ndim: int) -> torch.Tensor:
    """The bias to add to a ``[B, ..., dim]`` tensor with ``ndim`` dims.

    bias [dim] (shared) or [n_sets, dim] (one row per sample, idx [B] picks it; None: the
    index of ``bias_set_index``).
    """
    if bias.ndim == 1:
        return bias
    idx = _INDEX.get() if idx is None else idx
    if idx is None:
        raise ValueError(f'a layer with {bias.shape[0]} bias sets needs a task index per '
                         'sample (got None)')
    return bias[idx].reshape(idx.shape[0], *([1] * (ndim - 2)), bias.shape[1])


def _load_shared_into_sets(module, state_dict, prefix, names):
    """Pre-load hook: a 1-D tensor for a bias-set table is copied into every row."""
    for name in names:
        key = prefix + name
        param = getattr(module, name, None)
        value = state_dict.get(key)
        if (param is not None and value is not None and param.ndim == 2 and value.ndim == 1
                and value.shape[0] == param.shape[1]):
            state_dict[key] = value.expand_as(param).clone()


class BiasSetLinear(nn.Linear):
    """``nn.Linear`` with an optional bias table ``[n_sets, out_features]``.

    forward(x [B, ..., in_features], idx [B] or None) -> [B, ..., out_features].
    """
    bias_set_names = ('bias',)

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 n_sets: int = 0):
        super().__init__(in_features, out_features, bias=bias)
        if bias and n_sets > 0:
            self.bias = nn.Parameter(self.bias.detach().expand(n_sets, -1).clone())

    def forward(self, x: torch.Tensor, idx: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.bias is None or self.bias.ndim == 1:
            return F.linear(x, self.weight, self.bias)
        return F.linear(x, self.weight) + select_bias(self.bias, idx, x.ndim)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        _load_shared_into_sets(self, state_dict, prefix, ['bias'])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class BiasSetLayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` with an optional bias table ``[n_sets, dim]`` (the scale is shared).

    forward(x [B, ..., dim], idx [B] or None) -> [B, ..., dim].
    """
    bias_set_names = ('bias',)

    def __init__(self, dim: int, eps: float = 1e-6, n_sets: int = 0):
        super().__init__(dim, eps=eps)
        if n_sets > 0:
            self.bias = nn.Parameter(self.bias.detach().expand(n_sets, -1).clone())

    def forward(self, x: torch.Tensor, idx: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.bias.ndim == 1:
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        out = F.layer_norm(x, self.normalized_shape, self.weight, None, self.eps)
        return out + select_bias(self.bias, idx, x.ndim)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        _load_shared_into_sets(self, state_dict, prefix, ['bias'])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def add_bias_sets(module: nn.Module, n_sets: int) -> None:
    """Turn every ``nn.Linear`` with a bias and ``nn.LayerNorm`` (subclasses too) inside
    ``module`` into its bias-set twin with ``n_sets`` rows, each the old bias; the weights are
    kept (the same parameters). The new layers read the index of ``bias_set_index``."""
    plain = [(name, child) for name, child in module.named_modules()
             if isinstance(child, (nn.Linear, nn.LayerNorm)) and child.bias is not None
             and not isinstance(child, (BiasSetLinear, BiasSetLayerNorm))]
    for name, child in plain:
        if isinstance(child, nn.Linear):
            twin = BiasSetLinear(child.in_features, child.out_features, n_sets=n_sets)
        else:
            twin = BiasSetLayerNorm(child.normalized_shape[0], eps=child.eps, n_sets=n_sets)
        twin.weight = child.weight
        twin.bias = nn.Parameter(child.bias.detach().expand(n_sets, -1).clone())
        parent, _, attr = name.rpartition('.')
        setattr(module.get_submodule(parent), attr, twin)


def bias_set_parameters(module: nn.Module):
    """(name, parameter) of every bias-set table in ``module``: the 2-D parameters its layers
    name in ``bias_set_names``."""
    return [(f'{prefix}.{attr}' if prefix else attr, getattr(layer, attr))
            for prefix, layer in module.named_modules()
            for attr in getattr(layer, 'bias_set_names', ())
            if getattr(layer, attr) is not None and getattr(layer, attr).ndim == 2]
