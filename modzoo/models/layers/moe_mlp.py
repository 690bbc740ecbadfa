"""Mixture-of-experts MLP with task routers (Mod-Squad ``TaskMoE`` as the ViT MLP)."""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from modzoo.registry import MODELS
from .moe_dispatch import combine, dispatch, expert_capacity, grouped_linear, plan_dispatch
from .moe_export import SideBySide, all_experts_mlp, expert_gates
from .moe_losses import MoEAuxLoss
from .moe_router import TaskRouter, TaskSpec

EXPERT_INITS = ('timm', 'modsquad')


@torch.no_grad()
def init_experts(weight: Tensor, bias: Optional[Tensor], init: str = 'timm') -> None:
    """Initialise stacked expert weights ``weight`` [E, in, out] and biases [E, out].

    'timm': trunc-normal std 0.02 and zero biases (timm's ViT Linear init);
    'modsquad': the official ``ParallelExperts`` init, weights U(-1/in, 1/in) (1/in, not
    1/sqrt(in)) and biases U(-1/sqrt(out), 1/sqrt(out)) (torch reads the fan-in of an
    [in, out] matrix from its second axis).
    """
    if init == 'timm':
        nn.init.trunc_normal_(weight, std=0.02)
        if bias is not None:
            nn.init.zeros_(bias)
    elif init == 'modsquad':
        nn.init.uniform_(weight, -1.0 / weight.shape[1], 1.0 / weight.shape[1])
        if bias is not None:
            bound = weight.shape[2] ** -0.5
            nn.init.uniform_(bias, -bound, bound)
    else:
        raise ValueError(f'expert init must be one of {EXPERT_INITS}, got {init!r}')


@MODELS.register_module()
class MoEMlp(nn.Module):
    """E experts Linear(D, H) -> GELU -> Linear(H, D); each token uses its top-k experts.

    The output for a token is sum_j gate_j * expert_{e_j}(x). Mod-Squad's experts have
    H = 4D / k, so the k active experts cost as much as one dense MLP of hidden 4D.

    Args:
        embed_dim: token width D.
        num_experts: E.
        top_k: experts per token k.
        hidden_dims: expert hidden width H (default 4 * D // k).
        tasks, shared_router, renormalize, noisy_gating, prob_floor: see :class:`TaskRouter`.
        capacity_factor: None for dropless routing; otherwise each expert takes at most
            ceil(capacity_factor * S * k / E) of the S * k routing choices and drops the rest
            (a dropped choice adds nothing; the block's residual carries the token).
        mi_weight, balance_weight, z_weight, mi_momentum: see :class:`MoEAuxLoss`.
        drop: dropout after the activation and on the output, as timm ``Mlp``.
        router_init_std: see ``TaskRouter(init_std=...)``.
        expert_init: 'timm' or 'modsquad', see :func:`init_experts`.
        router_dims: width of the router's input (default D: it routes on the tokens).

    Parameters: ``fc1_weight`` [E, D, H], ``fc1_bias`` [E, H], ``fc2_weight`` [E, H, D],
    ``fc2_bias`` [E, D]; ``router.usage`` [T, E] counts the tokens each task sent to each
    expert. ``export_dispatch = True`` (``set_export_dispatch``) selects the export-friendly
    forward of ``moe_export.py`` (every expert on every token); a layer of ``top_k`` experts
    (E == k) always takes it: it is then a dense MLP of the active size times the gates.
    """
    export_dispatch = False

    def __init__(self,
                 embed_dim: int,
                 num_experts: int = 16,
                 top_k: int = 2,
                 hidden_dims: Optional[int] = None,
                 tasks: Union[int, Sequence[str]] = 1,
                 shared_router: bool = False,
                 renormalize: bool = True,
                 noisy_gating: bool = False,
                 capacity_factor: Optional[float] = None,
                 mi_weight: float = 0.0,
                 balance_weight: float = 0.0,
                 z_weight: float = 0.0,
                 mi_momentum: float = 0.99,
                 drop: float = 0.0,
                 router_init_std: float = 0.02,
                 prob_floor: float = 0.0,
                 expert_init: str = 'timm',
                 router_dims: Optional[int] = None):
        super().__init__()
        self.router = TaskRouter(router_dims or embed_dim, num_experts, top_k, tasks,
                                 shared_router, renormalize, noisy_gating,
                                 init_std=router_init_std, prob_floor=prob_floor)
        self.aux_loss = MoEAuxLoss(self.router.num_tasks, num_experts, mi_weight,
                                   balance_weight, z_weight, mi_momentum)
        self.num_experts = num_experts
        self.top_k = top_k
        self.capacity_factor = capacity_factor
        hidden_dims = hidden_dims or 4 * embed_dim // top_k
        self.fc1_weight = nn.Parameter(torch.empty(num_experts, embed_dim, hidden_dims))
        self.fc1_bias = nn.Parameter(torch.zeros(num_experts, hidden_dims))
        self.fc2_weight = nn.Parameter(torch.empty(num_experts, hidden_dims, embed_dim))
        self.fc2_bias = nn.Parameter(torch.zeros(num_experts, embed_dim))
        self.act = nn.GELU()
        self.drop = nn.Dropout(drop)
        self.fc1_side_by_side = SideBySide()  # fc1_weight as [D, E * H] (moe_export.py)
        self.expert_init = expert_init
        self.reset_parameters()

    def reset_parameters(self):
        """The ``expert_init`` of the experts (:func:`init_experts`)."""
        init_experts(self.fc1_weight, self.fc1_bias, self.expert_init)
        init_experts(self.fc2_weight, self.fc2_bias, self.expert_init)

    def forward(self, x: Tensor, task: TaskSpec = None,
                router_input: Optional[Tensor] = None) -> Tuple[Tensor, Dict[str, Tensor]]:
        """``x`` [B, N, D] (or [S, D]) of one task -> (output of the same shape, aux losses).

        ``task`` is a name or index of ``tasks`` (None for a single-task layer); the aux
        losses are the weighted ``loss_moe_*`` of :class:`MoEAuxLoss` ({} in evaluation).
        ``router_input`` [B, N, R] (or [S, R]), when given, is what the router sees instead
        of the tokens (attribute-level routing, Uni-Perceiver-MoE; build the layer with
        ``router_dims=R``).
        """
        tokens = x.reshape(-1, x.shape[-1])
        num_tokens = tokens.shape[0]
        gate_in = tokens if router_input is None else router_input.reshape(num_tokens, -1)
        routing = self.router(gate_in, task)
        capacity = None if self.capacity_factor is None else expert_capacity(
            num_tokens, self.num_experts, self.top_k, self.capacity_factor)
        if self.export_dispatch or self.num_experts == self.top_k:
            gates = expert_gates(routing, self.num_experts, capacity)
            out = all_experts_mlp(self, tokens, gates)
        else:
            plan = plan_dispatch(routing.topk_experts, routing.topk_gates, self.num_experts,
                                 capacity)
            h = grouped_linear(dispatch(tokens, plan), plan, self.fc1_weight, self.fc1_bias)
            h = self.drop(self.act(h))
            y = grouped_linear(h, plan, self.fc2_weight)
            out = self.drop(combine(y, plan, num_tokens, self.fc2_bias))
        return out.reshape(x.shape[:-1] + out.shape[-1:]), self.aux_loss(routing)

    @torch.no_grad()
    def upcycle(self, mlp: nn.Module):
        """Fill every expert from a dense MLP with ``fc1`` [H_d, D] and ``fc2`` [D, H_d] Linears.

        If the expert hidden size H equals H_d, every expert becomes a copy of the dense
        MLP (sparse upcycling, Komatsuzaki et al. 2023): with renormalised gates the layer
        then computes exactly the dense MLP. If H_d = G * H, the dense hidden units are
        split into G contiguous chunks of H and expert e takes chunk e mod G: the fc1 rows
        and biases of the chunk, the fc2 columns of the chunk times G, and the whole fc2
        bias. A token whose k = G experts hold each chunk once with equal gates 1/G then
        gets exactly the dense output; otherwise it gets the gate-weighted estimate of it.
        The routers are left as they are.
        """
        fc1, fc2 = mlp.fc1, mlp.fc2
        num_experts, embed_dim, hidden = self.fc1_weight.shape
        dense_hidden = fc1.weight.shape[0]
        if fc1.weight.shape[1] != embed_dim or fc2.weight.shape != (embed_dim, dense_hidden):
            raise ValueError(f'cannot upcycle a dense MLP with fc1 {tuple(fc1.weight.shape)} '
                             f'and fc2 {tuple(fc2.weight.shape)} into experts of width '
                             f'{embed_dim} -> {hidden} -> {embed_dim}')
        if dense_hidden % hidden:
            raise ValueError(f'the dense hidden size {dense_hidden} must be a multiple of the '
                             f'expert hidden size {hidden} to split it among the experts')
        chunks = dense_hidden // hidden
        for e in range(num_experts):
            units = slice((e % chunks) * hidden, (e % chunks + 1) * hidden)
            self.fc1_weight[e] = fc1.weight[units].t()
            self.fc1_bias[e] = 0 if fc1.bias is None else fc1.bias[units]
            self.fc2_weight[e] = chunks * fc2.weight[:, units].t()
            self.fc2_bias[e] = 0 if fc2.bias is None else fc2.bias

    def extra_repr(self) -> str:
        return (f'num_experts={self.num_experts}, top_k={self.top_k}, '
                f'hidden_dims={self.fc1_weight.shape[-1]}, '
                f'capacity_factor={self.capacity_factor}')
