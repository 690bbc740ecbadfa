"""Task-Balanced Gradient Normalization (Uni-Perceiver v2's MT-AdamW)."""
from typing import Dict, Optional

import torch
from torch.optim import Optimizer

from modzoo.registry import OPTIMIZERS


@OPTIMIZERS.register_module()
class TBGNAdamW(Optimizer):
    """AdamW for unmixed multi-task training, where every step trains one sampled task k.

    Uni-Perceiver v2 (Li et al., CVPR 2023, Sec. 4.4) changes two things of AdamW:

    1. the step's gradient is normalised to unit norm and scaled by the task's balance
       weight: ``g = w_k * grad / ||grad||``. The norm is the global L2 norm over every
       parameter of the optimizer that has a gradient (all param groups together), taken
       after the backward pass, i.e. after DDP has averaged the gradients over the ranks;
    2. the new-gradient weight of both Adam moments is divided by the task's sampling ratio
       s_k. In PyTorch's convention (beta weighs the old moment; the paper writes beta on
       the new gradient):

           m = beta1 * m + (1 - beta1) / s_k * g
           v = beta2 * v + (1 - beta2) / s_k * g**2

    so in expectation every task adds ``(1 - beta) * w_k * g_k`` per step whatever its
    sampling ratio. Bias correction is AdamW's, ``1 - beta**t`` with t counting all steps of
    all tasks: the expected weight of the moments' history, ``sum_k s_k * (1 - beta) / s_k
    * beta**i`` per task summed over i < t, is the same ``1 - beta**t`` as in AdamW.
    Decoupled weight decay as AdamW: ``p -= lr * weight_decay * p`` before the update.
    With one task, ``s = 1`` and ``w = ||grad||`` it is exactly AdamW.

    The sampled task is set before each step with :meth:`set_task` (the
    :class:`SampledTaskHook` does it from the batch's source). A step without a task, or
    with a task unknown to ``sampling_ratios``, raises.

    Args:
        params: parameters or param groups.
        lr, betas, eps, weight_decay: as ``torch.optim.AdamW`` (betas in PyTorch's convention).
        sampling_ratios: ``{task: s_k}``, positive; normalised to sum to 1. None: the hook
            fills them from the training batch sampler's source weights.
        task_weights: ``{task: w_k}`` (default 1 for every task: tasks contribute equally).
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, sampling_ratios: Optional[Dict[str, float]] = None,
                 task_weights: Optional[Dict[str, float]] = None):
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f'TBGNAdamW: betas must be in [0, 1), got {betas}')
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay))
        self.task_weights = {k: float(w) for k, w in (task_weights or {}).items()}
        self.sampling_ratios = None
        if sampling_ratios is not None:
            self.set_sampling_ratios(sampling_ratios)
        self.task = None

    def set_sampling_ratios(self, ratios: Dict[str, float]):
        """Set ``{task: s_k}`` (positive values, normalised to sum to 1)."""
        if not ratios or any(not v > 0 for v in ratios.values()):
            raise ValueError(f'TBGNAdamW: sampling_ratios must be positive, got {ratios}')
        total = sum(float(v) for v in ratios.values())
        self.sampling_ratios = {k: float(v) / total for k, v in ratios.items()}
        unknown = set(self.task_weights) - set(self.sampling_ratios)
        if unknown:
            raise KeyError(f'TBGNAdamW: task_weights name task(s) {sorted(unknown)} that have '
                           f'no sampling ratio; tasks: {sorted(self.sampling_ratios)}')

    def set_task(self, task: str):
        """The task whose gradient the next :meth:`step` applies."""
        self.task = task

    def _task_scales(self):
        """(s_k, w_k) of the current task, checked."""
        if self.task is None:
            raise RuntimeError("TBGNAdamW.step: no sampled task was set; add "
                               "custom_hooks=[dict(type='SampledTaskHook')] to the config or "
                               'call optimizer.set_task(task) before each step')
        if self.sampling_ratios is None:
            raise RuntimeError('TBGNAdamW.step: sampling_ratios are unknown; pass them or use '
                               'SampledTaskHook with a TaskBalancedSampler')
        if self.task not in self.sampling_ratios:
            raise KeyError(f"TBGNAdamW.step: task '{self.task}' has no sampling ratio; tasks: "
                           f'{sorted(self.sampling_ratios)}')
        return self.sampling_ratios[self.task], self.task_weights.get(self.task, 1.0)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        ratio, weight = self._task_scales()
        grads = [p.grad for group in self.param_groups for p in group['params']
                 if p.grad is not None]
        if not grads:
            return loss
        norm = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g.double()) for g in grads]))
        scale = weight / max(float(norm), 1e-12)
        for group in self.param_groups:
            beta1, beta2 = group['betas']
            for p in group['params']:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError('TBGNAdamW does not support sparse gradients')
                state = self.state[p]
                if not state:
                    state['step'] = torch.zeros((), dtype=torch.float64)
                    state['exp_avg'] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state['exp_avg_sq'] = torch.zeros_like(p,
                                                           memory_format=torch.preserve_format)
                state['step'] += 1
                t = int(state['step'])
                g = p.grad * scale
                p.mul_(1 - group['lr'] * group['weight_decay'])
                state['exp_avg'].mul_(beta1).add_(g, alpha=(1 - beta1) / ratio)
                state['exp_avg_sq'].mul_(beta2).addcmul_(g, g, value=(1 - beta2) / ratio)
                denom = (state['exp_avg_sq'] / (1 - beta2 ** t)).sqrt_().add_(group['eps'])
                p.addcdiv_(state['exp_avg'], denom, value=-group['lr'] / (1 - beta1 ** t))
        return loss

    def __repr__(self):
        return (f'{type(self).__name__}(sampling_ratios={self.sampling_ratios}, '
                f'task_weights={self.task_weights}, {super().__repr__()})')
