"""Sort-based dispatch and combine for mixture-of-experts layers.

S tokens each pick k experts: S * k (token, slot) pairs. ``plan_dispatch`` sorts the pairs
by expert (dropping those past an expert's capacity), so each expert's rows are one
contiguous group. ``grouped_linear`` multiplies every group by its expert's weight in one
grouped GEMM (``F.grouped_mm``: a CUTLASS kernel for bf16 on recent GPUs, a per-expert
``mm`` loop elsewhere), and ``combine`` adds each pair's output, times its gate, back to its
token with ``index_add_``. Nothing of size tokens x experts x capacity is ever built, and
nothing reads a tensor back to the host (no GPU synchronisation) unless the per-expert loop
runs.

Why jagged groups rather than a padded [E, C, D] capacity buffer and ``bmm`` (Tutel's
layout): the buffer computes E * max(counts) rows for P = sum(counts), and a batch of one
task, whose router favours a few experts, is far from balanced. Measured with
``tools/analysis/benchmark_moe.py`` on CPU, one thread, load max/mean 1.2: the padded
``bmm`` is ~1.2x slower. (With two threads on a busy 2-core machine it was faster: on CPU
each expert's ``mm`` is its own parallel region, and the idle-core waits add up.)
"""
import math
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor


class DispatchPlan(NamedTuple):
    """The P kept (token, slot) pairs, grouped by expert.

    pair_idx:   [P] long, index of each pair among the token-major slots [S * k]
    token_idx:  [P] long, the token of each pair (``pair_idx // k``)
    expert_idx: [P] long, the expert of each pair (non-decreasing)
    gates:      [P] fp32, the combine weight of each pair
    counts:     [E] long, pairs per expert (the group sizes, in expert order)
    offsets:    [E] int32, the end row of each expert's group
    """
    pair_idx: Tensor
    token_idx: Tensor
    expert_idx: Tensor
    gates: Tensor
    counts: Tensor
    offsets: Tensor


def expert_capacity(num_tokens: int, num_experts: int, top_k: int,
                    capacity_factor: float) -> int:
    """Pairs one expert may take: ceil(capacity_factor * S * k / E)."""
    if capacity_factor <= 0:
        raise ValueError(f'capacity_factor must be > 0, got {capacity_factor}')
    return max(1, math.ceil(capacity_factor * num_tokens * top_k / num_experts))


def plan_dispatch(topk_experts: Tensor, topk_gates: Tensor, num_experts: int,
                  capacity: Optional[int] = None) -> DispatchPlan:
    """Sort the pairs of ``topk_experts`` [S, k] by expert.

    With a ``capacity``, an expert keeps its first ``capacity`` pairs, all first choices
    ranking before second choices and tokens in order within a choice (GShard priority);
    the other pairs are dropped. Without one, every pair is kept (dropless).
    """
    num_tokens, k = topk_experts.shape
    slot_major = topk_experts.t().reshape(-1)  # [k * S]
    expert_idx, order = slot_major.sort(stable=True)
    counts = torch.bincount(slot_major, minlength=num_experts)
    pair_idx = (order % num_tokens) * k + order // num_tokens
    if capacity is not None:
        starts = counts.cumsum(0) - counts
        rank = torch.arange(order.numel(), device=order.device) - starts[expert_idx]
        keep = rank < capacity
        pair_idx, expert_idx = pair_idx[keep], expert_idx[keep]
        counts = counts.clamp(max=capacity)
    return DispatchPlan(pair_idx=pair_idx,
                        token_idx=pair_idx // k,
                        expert_idx=expert_idx,
                        gates=topk_gates.reshape(-1)[pair_idx],
                        counts=counts,
                        offsets=counts.cumsum(0).to(torch.int32))


def dispatch(x: Tensor, plan: DispatchPlan) -> Tensor:
    """Gather the token of every pair: [S, D] -> [P, D]."""
    return x.index_select(0, plan.token_idx)


def combine(y: Tensor, plan: DispatchPlan, num_tokens: int,
            bias: Optional[Tensor] = None) -> Tensor:
    """Sum the pairs' outputs times their gates per token: [P, D] -> [S, D].

    ``bias`` [E, D], the experts' output biases, is added to each pair's row before the
    gate: sum_j g_j (y_j + b_{e_j}). The bias part is computed as the [S, E] matrix of the
    gates times ``bias``, which starts the sum, so no [P, D] rows of biases are built.
    """
    gates = plan.gates.to(y.dtype)
    if bias is None:
        out = y.new_zeros(num_tokens, y.shape[-1])
    else:
        gate_matrix = gates.new_zeros(num_tokens, bias.shape[0]).index_put(
            (plan.token_idx, plan.expert_idx), gates)  # [S, E]
        out = gate_matrix @ bias.to(y.dtype)
    return out.index_add_(0, plan.token_idx, y * gates.unsqueeze(-1))


def to_slots(y: Tensor, plan: DispatchPlan, num_slots: int) -> Tensor:
    """Put each pair's row at its slot: [P, C] -> [S * k, C] (dropped slots are zero)."""
    return y.new_zeros(num_slots, y.shape[-1]).index_copy(0, plan.pair_idx, y)


def from_slots(y: Tensor, plan: DispatchPlan) -> Tensor:
    """Read the kept slots in expert order: [S * k, C] -> [P, C]."""
    return y.index_select(0, plan.pair_idx)


def grouped_linear(x: Tensor, plan: DispatchPlan, weight: Tensor,
                   bias: Optional[Tensor] = None) -> Tensor:
    """Multiply each expert's rows by its weight: [P, K] @ [E, K, N] (+ [E, N]) -> [P, N].

    Follows autocast: under ``torch.autocast`` the product runs in the autocast dtype,
    as ``nn.Linear`` would.
    """
    device = x.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
    x, weight = x.to(dtype), weight.to(dtype)
    if _grouped_mm_supported(x, weight):
        y = F.grouped_mm(x, weight, offs=plan.offsets)
    else:
        groups = x.split(plan.counts.tolist())
        y = torch.cat([xi @ wi for xi, wi in zip(groups, weight.unbind(0))])
    if bias is not None:
        # each pair's bias row is one_hot(expert) [P, E] @ bias [E, N], added in place by one
        # addmm: no [P, N] rows of biases gathered, and the bias gradient is one product
        # (one_hot^T @ dy) instead of a scatter-add of the [P, N] gradient
        y = y.addmm_(expert_one_hot(plan, weight.shape[0], dtype), bias.to(dtype))
    return y


def expert_one_hot(plan: DispatchPlan, num_experts: int, dtype: torch.dtype) -> Tensor:
    """[P, E] matrix with a 1 at each pair's expert."""
    return F.one_hot(plan.expert_idx, num_experts).to(dtype)


def _grouped_mm_supported(x: Tensor, weight: Tensor) -> bool:
    """``F.grouped_mm`` takes fp32/bf16 operands whose strides are multiples of 16 bytes
    (bf16 only under ``torch.compile``: its fake-tensor check refuses fp32)."""
    dtypes = (torch.bfloat16, ) if torch.compiler.is_compiling() else (torch.float32,
                                                                       torch.bfloat16)
    if not hasattr(F, 'grouped_mm') or x.dtype not in dtypes:
        return False
    align = 16 // x.element_size()
    return all(s == 1 or s % align == 0 for t in (x, weight) for s in t.stride())
