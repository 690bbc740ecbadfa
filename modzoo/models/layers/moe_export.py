"""Every expert on every token: the MoE layers' forward for export, and for layers where it is
cheaper than dispatch.

The sort-based dispatch (``moe_dispatch.py``) groups the (token, expert) pairs into jagged
per-expert groups whose sizes are read back to Python, which ``torch.export`` and ONNX cannot
trace. These functions run all E experts of a layer as ONE matrix product (the experts' weights
side by side, [D, E * H]: :class:`SideBySide`), scale each expert's chunk of the hidden units
by its gate (zero but for the token's kept top-k experts) and sum the chunks with a second
product ([E * H, D]), so every shape depends on the number of tokens only. They give the
dispatch's outputs (tested equal, with and without a capacity) at E / k times its expert FLOPs
(for attention: E / k times the query and output projections, the attention itself k queries
per token).

A layer takes this path

* when ``export_dispatch`` is set (:func:`set_export_dispatch`, for ``torch.export`` / ONNX);
* when it keeps no more experts than it selects (E == k, e.g. extracted with
  ``tools/extract.py --keep-top-k``): every token then uses every expert, and the layer is
  exactly a dense MLP (attention) of the active size whose hidden chunks (heads) are scaled by
  the gate, with no dispatch at all: beside the dense layer's work, only the router and one
  elementwise product of the hidden units (heads) by the gates.
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

    An expert keeps its first ``capacity`` pairs in preference order (all first choices,
    then all second choices, tokens in order), as ``plan_dispatch`` does. The router lists
    each token's choices by preference, but with k = E in expert order: the preference is
    read from the gates (largest first).
    """
    gates = routing.topk_gates
    if capacity is None:
        return gates
    num_tokens, k = gates.shape
    order = gates.argsort(dim=1, descending=True, stable=True)  # [S, k] slots by preference
    onehot = F.one_hot(routing.topk_experts.gather(1, order).t().reshape(-1),
                       num_experts)  # [k * S, E], choice-major
    rank = ((onehot.cumsum(0) - onehot) * onehot).sum(-1)  # pairs of its expert before it
    kept = (rank < capacity).view(k, num_tokens).t()
    return gates * kept.scatter(1, order, kept).to(gates.dtype)


def expert_gates(routing: Routing, num_experts: int, capacity: Optional[int] = None) -> Tensor:
    """[S, E]: each token's kept gates at its top-k experts, zero at the other experts."""
    gates = kept_slot_gates(routing, num_experts, capacity)
    if gates.shape[1] == num_experts:  # k = E: the router lists the experts in order
        return gates
    return gates.new_zeros(gates.shape[0], num_experts).scatter(1, routing.topk_experts, gates)


class SideBySide:
    """The experts' weights ``weight`` [E, D, H] side by side as one matrix [D, E * H] (columns
    e * H ... (e + 1) * H - 1 are expert e's), so that one product runs all experts.

    It is a copy of the weights: built anew on every call while autograd records the weight
    (training: the gradient flows back to it) and under ``torch.compile`` / export (the copy is
    then part of the graph); otherwise (inference) built once and kept until the weight is
    replaced or changed in place (``load_state_dict``, an optimizer step: its version counter
    moves; a write through ``weight.data`` is not seen), or until ``torch.inference_mode`` is
    entered or left (a copy made inside cannot serve autograd outside).
    """

    def __init__(self):
        self.key, self.matrix = None, None

    def __call__(self, weight: Tensor) -> Tensor:
        if (torch.is_grad_enabled() and weight.requires_grad) or torch.compiler.is_compiling():
            return weight.transpose(0, 1).reshape(weight.shape[1], -1)
        key = (id(weight), weight.data_ptr(), weight._version, weight.shape, weight.dtype,
               torch.is_inference_mode_enabled())
        if key != self.key:
            self.key = key
            self.matrix = weight.detach().transpose(0, 1).reshape(weight.shape[1], -1)
        return self.matrix


def scale_chunks(units: Tensor, gates: Tensor) -> Tensor:
    """Chunk e of each token's units times its gate: ``units`` [S, E * H] (hidden units,
    heads), ``gates`` [S, E] of the same dtype -> [S, E * H]. In place when autograd does not
    record it (inference: a fresh [S, E * H] buffer costs the CPU more than the product)."""
    chunks, gates = units.view(gates.shape + (-1, )), gates.unsqueeze(-1)  # [S, E, H], [S, E, 1]
    if units.requires_grad or gates.requires_grad:
        return (chunks * gates).flatten(1)
    chunks.mul_(gates)
    return units


def all_experts_mlp(layer, tokens: Tensor, gates: Tensor) -> Tensor:
    """``MoEMlp`` on ``tokens`` [S, D] with the gates [S, E] of :func:`expert_gates` -> [S, D]:
    sum_e g_e (act(x W1_e + b1_e) W2_e + b2_e), as act(x [W1_1 .. W1_E] + b1) [S, E * H]
    scaled chunk by chunk by the gates, times [W2_1; ..; W2_E] [E * H, D]."""
    gates = gates.to(tokens.dtype)
    h = torch.addmm(layer.fc1_bias.flatten(), tokens, layer.fc1_side_by_side(layer.fc1_weight))
    h = scale_chunks(layer.drop(layer.act(h)), gates)
    fc2 = layer.fc2_weight.flatten(0, 1)  # [E * H, D], no copy
    return layer.drop(torch.addmm(gates @ layer.fc2_bias, h, fc2))


def all_experts_attention(layer, x: Tensor, routing: Routing,
                          capacity: Optional[int] = None) -> Tensor:
    """``MixtureOfAttentionHeads`` on ``x`` [B, N, D] routed by ``routing``, every query
    expert on every token -> [B, N, D]. The k queries of each token are picked from the E
    experts' (unless E == k: they are the E experts' in order) and attend the shared key and
    value head."""
    batch, num_tokens, _ = x.shape
    k, d, num_experts = layer.num_heads, layer.head_dims, layer.num_experts
    tokens = x.reshape(batch * num_tokens, -1)
    q = tokens @ layer.q_side_by_side(layer.q_weight)  # [S, E * d]
    if num_experts == k:  # every token uses every expert: the experts are the slots
        gates = expert_gates(routing, num_experts, capacity)
    else:
        slots = routing.topk_experts.unsqueeze(-1).expand(-1, -1, d)  # [S, k, d]
        gates = kept_slot_gates(routing, num_experts, capacity)
        q = q.view(-1, num_experts, d).gather(1, slots)
    key, value = layer.kv(x).unsqueeze(1).chunk(2, dim=-1)  # [B, 1, N, d] each
    heads = F.scaled_dot_product_attention(
        q.reshape(batch, 1, num_tokens * k, d), key, value,
        dropout_p=layer.attn_drop if layer.training else 0.0)
    heads = scale_chunks(heads.reshape(-1, k * d), gates.to(heads.dtype))  # [S, k * d]
    if num_experts != k:
        heads = heads.new_zeros(tokens.shape[0], num_experts, d).scatter(
            1, slots, heads.view(-1, k, d)).flatten(1)
    out = heads @ layer.out_weight.reshape(num_experts * d, -1)
    return layer.proj_drop(out).view(batch, num_tokens, -1)
