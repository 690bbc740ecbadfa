"""Export-friendly forward of the MoE layers: static shapes, no data-dependent control flow.

The sort-based dispatch (``moe_dispatch.py``) groups the (token, expert) pairs into jagged
per-expert groups whose sizes are read back to Python, which ``torch.export`` and ONNX cannot
trace. This path runs every expert on every token and weights the results by dense gates
[S, E] that are zero but for each token's kept top-k experts, so every shape depends on the
number of tokens only. It gives the sort-based path's outputs (tested equal in eval, with and
without a capacity) at E / k times its expert FLOPs: it is for export, selected with
:func:`set_export_dispatch`; training and eager inference keep the sort-based path.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .moe_dispatch import expert_capacity
from .moe_router import Routing


def set_export_dispatch(model: nn.Module, enabled: bool = True) -> int:
    """Switch every MoE layer of ``model`` (``MoEMlp``, ``MixtureOfAttentionHeads``) to the
    export-friendly forward, or back; returns how many layers it switched."""
    layers = [m for m in model.modules() if hasattr(m, 'export_dispatch')]
    for layer in layers:
        layer.export_dispatch = enabled
    return len(layers)


def kept_slot_gates(routing: Routing, num_experts: int,
                    capacity: Optional[int] = None) -> Tensor:
    """The gate of each (token, slot) pair [S, k], zero where the capacity drops the pair.

    An expert keeps its first ``capacity`` pairs in slot-major order (all first choices,
    then all second choices, tokens in order), as ``plan_dispatch`` does.
    """
    gates = routing.topk_gates
    if capacity is None:
        return gates
    num_tokens, k = routing.topk_experts.shape
    onehot = F.one_hot(routing.topk_experts.t().reshape(-1), num_experts)  # [k * S, E]
    rank = ((onehot.cumsum(0) - onehot) * onehot).sum(-1)  # pairs of its expert before it
    return gates * (rank < capacity).view(k, num_tokens).t().to(gates.dtype)


def _slot_gates(layer, tokens: Tensor, task, top_k: int) -> tuple:
    """Route ``tokens`` [S, D]; returns (experts [S, k], kept gates [S, k] in tokens' dtype)."""
    routing = layer.router(tokens, task)
    capacity = None if layer.capacity_factor is None else expert_capacity(
        tokens.shape[0], layer.num_experts, top_k, layer.capacity_factor)
    gates = kept_slot_gates(routing, layer.num_experts, capacity)
    return routing.topk_experts, gates.to(tokens.dtype)


def moe_mlp_export_forward(layer, x: Tensor, task) -> Tensor:
    """``MoEMlp`` on ``x`` [..., D] with every expert on every token -> [..., D]."""
    tokens = x.reshape(-1, x.shape[-1])
    experts, gates = _slot_gates(layer, tokens, task, layer.top_k)
    dense_gates = torch.einsum('sk,ske->se', gates,
                               F.one_hot(experts, layer.num_experts).to(gates.dtype))
    h = torch.einsum('sd,edh->seh', tokens, layer.fc1_weight) + layer.fc1_bias
    h = layer.drop(layer.act(h))
    y = torch.einsum('seh,ehd->sed', h, layer.fc2_weight) + layer.fc2_bias  # [S, E, D]
    out = layer.drop(torch.einsum('se,sed->sd', dense_gates, y))
    return out.reshape(x.shape)


def moa_export_forward(layer, x: Tensor, task) -> Tensor:
    """``MixtureOfAttentionHeads`` on ``x`` [B, N, D] with every query expert on every token."""
    batch, num_tokens, _ = x.shape
    k, d = layer.num_heads, layer.head_dims
    tokens = x.reshape(batch * num_tokens, -1)
    experts, gates = _slot_gates(layer, tokens, task, k)
    onehot = F.one_hot(experts, layer.num_experts).to(x.dtype)  # [S, k, E]
    q_all = torch.einsum('sd,edh->seh', tokens, layer.q_weight)  # [S, E, d]
    q = torch.einsum('ske,seh->skh', onehot, q_all).reshape(batch, 1, num_tokens * k, d)
    key, value = layer.kv(x).unsqueeze(1).chunk(2, dim=-1)  # [B, 1, N, d] each
    heads = F.scaled_dot_product_attention(q, key, value).reshape(-1, k, d)  # [S, k, d]
    per_expert = torch.einsum('ske,skh->seh', onehot * gates.unsqueeze(-1), heads)
    out = torch.einsum('seh,ehd->sd', per_expert, layer.out_weight)
    return layer.proj_drop(out).view(batch, num_tokens, -1)
