"""Mixture of attention heads (MoA, Mod-Squad ``MoETaskAttention``)."""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modzoo.registry import MODELS
from .moe_dispatch import (combine, dispatch, expert_capacity, from_slots, grouped_linear,
                           plan_dispatch, to_slots)
from .moe_export import SideBySide, all_experts_attention
from .moe_losses import MoEAuxLoss
from .moe_mlp import init_experts
from .moe_router import TaskRouter, TaskSpec


@MODELS.register_module()
class MixtureOfAttentionHeads(nn.Module):
    """Self-attention whose heads are routed experts, with one shared key/value head.

    Each token picks k = ``num_heads`` of E attention experts. Expert e owns a query
    projection Wq_e [D, d] and an output projection Wo_e [d, D] (no biases); one shared
    ``kv`` Linear(D, 2d) gives the single key and value head that every query attends
    (multi-query attention). For a token x that picked experts e_1..e_k with gates g_j:

        q_j = x Wq_{e_j},   h_j = softmax(q_j K^T / sqrt(d)) V,   out = sum_j g_j h_j Wo_{e_j}

    where K, V [N, d] come from all N tokens of the image. There is no other output
    projection.

    Args:
        embed_dim: token width D.
        num_experts: E attention experts.
        num_heads: heads per token k (the router's top-k).
        head_dims: d (default D // num_heads; the Mod-Squad "twice" models use 2D // heads).
        tasks, shared_router, renormalize, noisy_gating, prob_floor: see :class:`TaskRouter`.
        capacity_factor: None for dropless; see :class:`MoEMlp` (a dropped head adds
            nothing to its token).
        mi_weight, balance_weight, z_weight, mi_momentum: see :class:`MoEAuxLoss`.
        kv_bias: bias of the key/value projection.
        attn_drop, proj_drop: dropout on the attention weights and on the output.
        router_init_std: see ``TaskRouter(init_std=...)``.
        expert_init: init of the query and output experts, 'timm' or 'modsquad' (see
            :func:`~modzoo.models.layers.moe_mlp.init_experts`); ``kv`` gets timm's.

    Parameters: ``q_weight`` [E, D, d], ``out_weight`` [E, d, D], ``kv`` Linear(D, 2d).
    ``export_dispatch = True`` selects the export-friendly forward of ``moe_export.py`` (every
    query expert on every token, no dispatch), which a layer of ``num_heads`` experts (E == k)
    always takes: it is then a multi-query attention of k heads with gate-scaled heads.
    """
    export_dispatch = False

    def __init__(self,
                 embed_dim: int,
                 num_experts: int = 24,
                 num_heads: int = 12,
                 head_dims: Optional[int] = None,
                 tasks: Union[int, Sequence[str]] = 1,
                 shared_router: bool = False,
                 renormalize: bool = True,
                 noisy_gating: bool = False,
                 capacity_factor: Optional[float] = None,
                 mi_weight: float = 0.0,
                 balance_weight: float = 0.0,
                 z_weight: float = 0.0,
                 mi_momentum: float = 0.99,
                 kv_bias: bool = True,
                 attn_drop: float = 0.0,
                 proj_drop: float = 0.0,
                 router_init_std: float = 0.02,
                 prob_floor: float = 0.0,
                 expert_init: str = 'timm'):
        super().__init__()
        self.router = TaskRouter(embed_dim, num_experts, num_heads, tasks, shared_router,
                                 renormalize, noisy_gating, init_std=router_init_std,
                                 prob_floor=prob_floor)
        self.aux_loss = MoEAuxLoss(self.router.num_tasks, num_experts, mi_weight,
                                   balance_weight, z_weight, mi_momentum)
        self.num_experts = num_experts
        self.num_heads = num_heads
        self.head_dims = head_dims or embed_dim // num_heads
        self.capacity_factor = capacity_factor
        self.q_weight = nn.Parameter(torch.empty(num_experts, embed_dim, self.head_dims))
        self.out_weight = nn.Parameter(torch.empty(num_experts, self.head_dims, embed_dim))
        self.kv = nn.Linear(embed_dim, 2 * self.head_dims, bias=kv_bias)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)
        self.q_side_by_side = SideBySide()  # q_weight as [D, E * d] (moe_export.py)
        self.expert_init = expert_init
        self.reset_parameters()

    def reset_parameters(self):
        """The ``expert_init`` of the experts; ``kv``: trunc-normal std 0.02, bias 0."""
        init_experts(self.q_weight, None, self.expert_init)
        init_experts(self.out_weight, None, self.expert_init)
        nn.init.trunc_normal_(self.kv.weight, std=0.02)
        if self.kv.bias is not None:
            nn.init.zeros_(self.kv.bias)

    def forward(self, x: Tensor, task: TaskSpec = None) -> Tuple[Tensor, Dict[str, Tensor]]:
        """``x`` [B, N, D] of one task -> (output [B, N, D], aux losses), as ``MoEMlp``."""
        if x.dim() != 3:
            raise ValueError(f'MixtureOfAttentionHeads expects tokens [B, N, D], got '
                             f'shape {tuple(x.shape)}')
        batch, num_tokens, _ = x.shape
        k, d = self.num_heads, self.head_dims
        tokens = x.reshape(batch * num_tokens, -1)
        routing = self.router(tokens, task)
        capacity = None if self.capacity_factor is None else expert_capacity(
            tokens.shape[0], self.num_experts, k, self.capacity_factor)
        if self.export_dispatch or self.num_experts == k:
            return all_experts_attention(self, x, routing, capacity), self.aux_loss(routing)
        plan = plan_dispatch(routing.topk_experts, routing.topk_gates, self.num_experts,
                             capacity)
        q = grouped_linear(dispatch(tokens, plan), plan, self.q_weight)  # [P, d]
        # Every (token, head) query attends the same single key/value head, so the N * k
        # queries of an image form one attention call: [B, 1, N * k, d].
        q = to_slots(q, plan, tokens.shape[0] * k).view(batch, 1, num_tokens * k, d)
        key, value = self.kv(x).unsqueeze(1).chunk(2, dim=-1)  # [B, 1, N, d] each
        heads = F.scaled_dot_product_attention(
            q, key, value, dropout_p=self.attn_drop if self.training else 0.0)
        heads = from_slots(heads.reshape(-1, d), plan)  # [P, d]
        out = combine(grouped_linear(heads, plan, self.out_weight), plan, tokens.shape[0])
        out = self.proj_drop(out).view(batch, num_tokens, -1)
        return out, self.aux_loss(routing)

    @torch.no_grad()
    def upcycle(self, attn: nn.Module):
        """Fill the experts from a dense timm ``Attention`` of H heads of width d = ``head_dims``
        (``qkv`` Linear(D, 3 H d), ``proj`` Linear(H d, D)), an approximation of it:

        expert e takes the query rows of head e mod H and the ``proj`` columns of that head
        times H (with k = H experts holding each head once at gates 1/H, the heads then sum
        as in the dense layer); the shared key/value head is the mean of the H key/value
        heads (multi-query uptraining, Ainslie et al. 2023, "GQA"). Dropped: the query bias,
        the ``proj`` bias and the differences between the heads' keys and values. The
        router is left as it is.
        """
        num_heads, d = attn.num_heads, self.head_dims
        qkv = attn.qkv.weight.view(3, num_heads, d, -1)  # [3, H, d, D]
        if qkv.shape[-1] != self.q_weight.shape[1] or attn.head_dim != d:
            raise ValueError(f'cannot upcycle a dense attention of {num_heads} heads of width '
                             f'{attn.head_dim} on {qkv.shape[-1]} channels into experts of '
                             f'width {d} on {self.q_weight.shape[1]} channels')
        proj = attn.proj.weight.view(-1, num_heads, d)  # [D, H, d]
        for e in range(self.num_experts):
            self.q_weight[e] = qkv[0, e % num_heads].t()
            self.out_weight[e] = num_heads * proj[:, e % num_heads].t()
        self.kv.weight.copy_(qkv[1:].mean(1).reshape(2 * d, -1))
        if self.kv.bias is not None:
            bias = (attn.qkv.bias.view(3, num_heads, d)[1:].mean(1).reshape(-1)
                    if attn.qkv.bias is not None else 0)
            self.kv.bias.copy_(bias)

    def extra_repr(self) -> str:
        return (f'num_experts={self.num_experts}, num_heads={self.num_heads}, '
                f'head_dims={self.head_dims}, capacity_factor={self.capacity_factor}')
