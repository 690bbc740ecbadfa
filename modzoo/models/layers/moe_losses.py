"""Auxiliary router losses of mixture-of-experts layers.

- ``loss_moe_mi``: Mod-Squad's mutual information between tasks and experts, estimated
  across iterations so it works when every batch holds a single task;
- ``loss_moe_balance``: the Switch Transformer load-balancing loss;
- ``loss_moe_z``: the ST-MoE router z-loss.
"""
from typing import Dict, Iterable

import torch
from torch import Tensor, nn

from .moe_router import Routing, recording


def switch_balance_loss(probs: Tensor, topk_experts: Tensor) -> Tensor:
    """E * sum_e f_e * P_e (1 when uniform; Fedus et al. 2021).

    f_e is the fraction of the S * k routing choices [S, k] that picked expert e and P_e the
    mean router probability of e over the S tokens (``probs`` [S, E]).
    """
    num_experts = probs.shape[-1]
    counts = torch.bincount(topk_experts.flatten(), minlength=num_experts)
    fraction = counts.to(probs.dtype) / topk_experts.numel()
    return num_experts * (fraction * probs.mean(dim=0)).sum()


def router_z_loss(logits: Tensor) -> Tensor:
    """Mean over tokens of logsumexp(logits)^2, [S, E] -> [] (Zoph et al. 2022)."""
    return logits.logsumexp(dim=-1).square().mean()


class MutualInformationLoss(nn.Module):
    """Mod-Squad's loss -MI(T; E), from a running estimate of P(t, e).

    Mod-Squad estimates P(t, e) = (1/N) sum over task-t tokens of p(e | x) from one
    iteration that holds every task. When a batch holds a single task (heterogeneous,
    unmixed sampling) that estimate is degenerate: P(t) = 1 and MI = 0 for any router.
    So the buffer ``joint`` [T, E] keeps an exponential moving average of the batches'
    P(t, e) (mean over the first 1/(1 - momentum) updates), which converges to
    P(t) p(e | t) with P(t) the rate at which task t is sampled.

    The loss of a batch of task t is the first-order (linearised) -MI around that estimate
    (as in the one-task-per-batch variant of the Mod-Squad ``TaskMoE``):

        L = -P(t) sum_e p_b(e) [log P(t, e) - log P(e)] = -P(t) sum_e p_b(e) log P(t | e)

    where p_b(e) is the batch mean of p(e | x) (carrying the gradient) and P(.) are the
    detached running estimates. Summed over one batch of each task it equals
    H(T | E) = H(T) - MI(T; E), so minimising it drives each task to experts that it
    alone uses. The estimate is updated in training only (not while statistics are paused).
    """

    def __init__(self, num_tasks: int, num_experts: int, momentum: float = 0.99,
                 eps: float = 1e-4):
        super().__init__()
        if not 0 <= momentum < 1:
            raise ValueError(f'momentum must be in [0, 1), got {momentum}')
        self.momentum = momentum
        self.eps = eps
        self.register_buffer('joint', torch.full((num_tasks, num_experts),
                                                 1.0 / (num_tasks * num_experts)))
        self.register_buffer('num_updates', torch.zeros((), dtype=torch.long))

    def forward(self, probs: Tensor, task: int) -> Tensor:
        """Loss for router probabilities ``probs`` [S, E] of tokens of ``task``."""
        p_batch = probs.float().mean(dim=0)  # [E]
        if self.training and recording():
            self._update(p_batch.detach(), task)
        joint = self.joint
        log_task_given_expert = (joint[task] + self.eps).log() - (joint.sum(0) + self.eps).log()
        return -joint[task].sum() * (p_batch * log_task_given_expert).sum()

    @torch.no_grad()
    def add_tasks(self, count: int):
        """Append ``count`` tasks, each estimated as the mean task so far (renormalised)."""
        joint = torch.cat([self.joint, self.joint.mean(0, keepdim=True).expand(count, -1)])
        self.joint = joint / joint.sum()

    @torch.no_grad()
    def _update(self, p_batch: Tensor, task: int):
        self.num_updates += 1
        momentum = (1.0 - 1.0 / self.num_updates).clamp(max=self.momentum)
        self.joint.mul_(momentum)
        self.joint[task] += (1.0 - momentum) * p_batch


class MoEAuxLoss(nn.Module):
    """The weighted auxiliary losses of one MoE layer.

    Returns ``{'loss_moe_mi', 'loss_moe_balance', 'loss_moe_z'}``, each times its weight;
    a loss whose weight is 0 is left out, and evaluation returns ``{}``.
    """

    def __init__(self, num_tasks: int, num_experts: int, mi_weight: float = 0.0,
                 balance_weight: float = 0.0, z_weight: float = 0.0,
                 mi_momentum: float = 0.99):
        super().__init__()
        self.mi_weight = mi_weight
        self.balance_weight = balance_weight
        self.z_weight = z_weight
        self.mi = MutualInformationLoss(num_tasks, num_experts, mi_momentum) if mi_weight else None

    def forward(self, routing: Routing) -> Dict[str, Tensor]:
        if not self.training:
            return {}
        losses = {}
        if self.mi is not None:
            losses['loss_moe_mi'] = self.mi_weight * self.mi(routing.probs, routing.task)
        if self.balance_weight:
            losses['loss_moe_balance'] = self.balance_weight * switch_balance_loss(
                routing.probs, routing.topk_experts)
        if self.z_weight:
            losses['loss_moe_z'] = self.z_weight * router_z_loss(routing.logits)
        return losses

    def extra_repr(self) -> str:
        return (f'mi_weight={self.mi_weight}, balance_weight={self.balance_weight}, '
                f'z_weight={self.z_weight}')


def sum_aux_losses(losses: Iterable[Dict[str, Tensor]]) -> Dict[str, Tensor]:
    """Add up the aux-loss dicts of several layers key by key."""
    total: Dict[str, Tensor] = {}
    for layer_losses in losses:
        for key, value in layer_losses.items():
            total[key] = total[key] + value if key in total else value
    return total
