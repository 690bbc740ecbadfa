"""Every expert on every token: the MoE layers' forward for export, and for layers where it is
cheaper than dispatch.

The sort-based dispatch (``moe_dispatch.py``) groups the (token, expert) pairs into jagged
per-expert groups whose sizes are read back to Python, which ``torch.export`` and ONNX cannot
trace. These functions run all E experts of a layer as ONE matrix product (the experts' hidden
units side by side, [D, E * H]), scale each expert's chunk by its gate (zero but for the
token's kept top-k experts) and sum the chunks with a second product ([E * H, D]), so every
shape depends on the number of tokens only. They give the dispatch's outputs (tested equal,
with and without a capacity) at E / k times its expert FLOPs (for attention: E / k times the
query and output projections, the attention itself k queries per token).

A layer takes this path

* when ``export_dispatch`` is set (:func:`set_export_dispatch`, for ``torch.export`` / ONNX);
* when it keeps no more experts than it selects (E == k, e.g. extracted with
  ``tools/extract.py --keep-top-k``): every token then uses every expert, and the layer is
  exactly a dense MLP (attention) of the active size whose hidden chunks (heads) are scaled by
  the gate, with no dispatch at all.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


def expert_gates(routing: Routing, num_experts: int, capacity: Optional[int] = None) -> Tensor:
    """[S, E]: each token's kept gates at its top-k experts, zero at the other experts."""
    gates = kept_slot_gates(routing, num_experts, capacity)
    return gates.new_zeros(gates.shape[0], num_experts).scatter(1, routing.topk_experts, gates)


def all_experts_mlp(layer, tokens: Tensor, gates: Tensor) -> Tensor:
    """``MoEMlp`` on ``tokens`` [S, D] with the gates [S, E] of :func:`expert_gates` -> [S, D]:
    sum_e g_e (act(x W1_e + b1_e) W2_e + b2_e)."""
    num_experts, _, hidden = layer.fc1_weight.shape
    gates = gates.to(tokens.dtype)
    h = torch.baddbmm(layer.fc1_bias.unsqueeze(1), tokens.expand(num_experts, -1, -1),
                      layer.fc1_weight)  # [E, S, H]
    h = layer.drop(layer.act(h)).transpose(0, 1)  # [S, E, H]
    # gates first: the product is laid out as the gates [S, E, 1] are, so scaling the
    # chunks also puts them side by side in one pass ([S, E * H] without another copy)
    h = (gates.unsqueeze(-1).to(h.dtype) * h).reshape(tokens.shape[0], -1)
    fc2 = layer.fc2_weight.reshape(num_experts * hidden, -1)  # [E * H, D]
    return layer.drop(torch.addmm(gates @ layer.fc2_bias, h, fc2))


def all_experts_attention(layer, x: Tensor, routing: Routing,
                          capacity: Optional[int] = None) -> Tensor:
    """``MixtureOfAttentionHeads`` on ``x`` [B, N, D] routed by ``routing``, every query
    expert on every token -> [B, N, D]. The k queries of each token are picked from the E
    experts' (unless E == k) and attend the shared key and value head."""
    batch, num_tokens, _ = x.shape
    k, d, num_experts = layer.num_heads, layer.head_dims, layer.num_experts
    tokens = x.reshape(batch * num_tokens, -1)
    q = torch.bmm(tokens.expand(num_experts, -1, -1), layer.q_weight).transpose(0, 1)  # [S, E, d]
    slots = routing.topk_experts.unsqueeze(-1).expand(-1, -1, d)  # [S, k, d]
    if num_experts == k:  # every token uses every expert: the experts are the slots
        gates = expert_gates(routing, num_experts, capacity)
    else:
        gates, q = kept_slot_gates(routing, num_experts, capacity), q.gather(1, slots)
    key, value = layer.kv(x).unsqueeze(1).chunk(2, dim=-1)  # [B, 1, N, d] each
    heads = F.scaled_dot_product_attention(
        q.reshape(batch, 1, num_tokens * k, d), key, value,
        dropout_p=layer.attn_drop if layer.training else 0.0)
    heads = heads.reshape(-1, k, d) * gates.to(heads.dtype).unsqueeze(-1)  # [S, k, d]
    if num_experts != k:
        heads = heads.new_zeros(tokens.shape[0], num_experts, d).scatter(1, slots, heads)
    out = heads.reshape(tokens.shape[0], -1) @ layer.out_weight.reshape(num_experts * d, -1)
    return layer.proj_drop(out).view(batch, num_tokens, -1)
