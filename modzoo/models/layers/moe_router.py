"""Task-conditioned top-k routing for mixture-of-experts layers (Mod-Squad ``TaskMoE`` gate).

One bias-free linear router per task (or one shared by all tasks) maps each token to
logits over E experts; the k most probable experts serve the token. The router runs in
fp32 (fp64 for fp64 inputs), whatever the autocast or parameter dtype.
"""
import contextlib
import contextvars
import itertools
from typing import Callable, NamedTuple, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TaskSpec = Union[int, str, None]
_RECORDING = contextvars.ContextVar('moe_recording', default=True)


def recording() -> bool:
    """Whether MoE layers record statistics now (usage counts, running estimates)."""
    return _RECORDING.get()


@contextlib.contextmanager
def statistics_paused():
    """MoE layers run without recording statistics inside (e.g. a recomputed forward pass)."""
    token = _RECORDING.set(False)
    try:
        yield
    finally:
        _RECORDING.reset(token)


def record_once(function: Callable) -> Callable:
    """``function`` recording MoE statistics on its first call only: activation
    checkpointing calls it again in the backward pass to recompute what it computed."""
    calls = itertools.count()

    def run(*args, **kwargs):
        if next(calls) == 0:
            return function(*args, **kwargs)
        with statistics_paused():
            return function(*args, **kwargs)
    return run


class Routing(NamedTuple):
    """What a router decides for S tokens (all fp32, or fp64 for fp64 inputs, but indices).

    logits:       [S, E] router logits (noise included when training with noisy gating)
    probs:        [S, E] softmax of ``logits``
    topk_experts: [S, k] long, the experts each token uses, most probable first (with
                  k = E in expert order: every token uses every expert)
    topk_gates:   [S, k] combine weights (``probs`` of those experts plus the router's
                  ``prob_floor``, renormalised to sum to 1 when the router renormalises)
    task:         index of the task the tokens belong to
    """
    logits: Tensor
    probs: Tensor
    topk_experts: Tensor
    topk_gates: Tensor
    task: int


def resolve_tasks(tasks: Union[int, Sequence[str]]) -> tuple:
    """Task names from a count (``3`` -> ``('0', '1', '2')``) or a list of names."""
    if isinstance(tasks, int):
        if tasks < 1:
            raise ValueError(f'tasks must be a positive count or a list of names, got {tasks}')
        return tuple(str(i) for i in range(tasks))
    names = tuple(tasks)
    if not names or len(set(names)) != len(names) or not all(isinstance(n, str) for n in names):
        raise ValueError(f'tasks must be a non-empty list of distinct names, got {tasks!r}')
    return names


class TaskRouter(nn.Module):
    """Top-k gate with one router per task.

    Args:
        embed_dim: token width D.
        num_experts: number of experts E.
        top_k: experts per token k (1 <= k <= E).
        tasks: number of tasks or their names; ``forward(x, task)`` picks the router by
            name or index.
        shared: one router for all tasks (usage is still counted per task).
        renormalize: divide the top-k probabilities by their sum (Mod-Squad does not).
        noisy_gating: in training only, add N(0, 1) * (softplus(x W_noise) + noise_eps) to
            the logits (Shazeer et al. 2017). Evaluation routes on the clean logits.
        noise_eps: minimum noise std.
        prob_floor: added to the probabilities before the top-k (it leaves the choice as it
            is and raises each gate by it; Mod-Squad adds 1e-4).
        init_std: std of the truncated-normal router init (0 gives the zero init of the
            Mod-Squad constructor; its timm ``_init_weights`` re-initialises to std 0.02).
        usage_momentum: momentum of ``usage_ema`` (Mod-Squad's 0.95).

    Buffers:
        usage: [T, E] long, how many tokens each task sent to each expert (top-k choices,
            counted in training and evaluation; ``usage.zero_()`` resets it).
        usage_ema: [T, E] float, Mod-Squad's usage statistic ``task_gate_freq``: after each
            pass of task t, row t <- m * row t + (1 - m) * that pass's counts (m =
            ``usage_momentum``), so it reflects the last ~1 / (1 - m) passes of the task.
        Neither is updated while :func:`statistics_paused` (recomputation).
        allowed: None, or [T, E] bool after :meth:`restrict` (not saved: the model that
            restricts its routers does so when it is built).
        expert_ids: [E] long, 0 .. E - 1 (not saved): the experts of every token when k = E.
    """

    def __init__(self,
                 embed_dim: int,
                 num_experts: int,
                 top_k: int,
                 tasks: Union[int, Sequence[str]] = 1,
                 shared: bool = False,
                 renormalize: bool = True,
                 noisy_gating: bool = False,
                 noise_eps: float = 1e-2,
                 init_std: float = 0.02,
                 prob_floor: float = 0.0,
                 usage_momentum: float = 0.95):
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f'top_k must be between 1 and num_experts, got top_k={top_k} '
                             f'and num_experts={num_experts}')
        self.num_experts = num_experts
        self.top_k = top_k
        self.task_names = resolve_tasks(tasks)
        self.shared = shared
        self.renormalize = renormalize
        self.noise_eps = noise_eps
        self.prob_floor = prob_floor
        num_routers = 1 if shared else len(self.task_names)
        self.weight = nn.Parameter(torch.empty(num_routers, num_experts, embed_dim))
        self.noise_weight = (nn.Parameter(torch.empty(num_routers, num_experts, embed_dim))
                             if noisy_gating else None)
        self.register_buffer('usage', torch.zeros(len(self.task_names), num_experts,
                                                  dtype=torch.long))
        self.usage_momentum = usage_momentum
        self.register_buffer('usage_ema', torch.zeros(len(self.task_names), num_experts))
        self.register_buffer('allowed', None, persistent=False)
        self.register_buffer('expert_ids', torch.arange(num_experts), persistent=False)
        self.init_std = init_std
        self.reset_parameters()

    def reset_parameters(self):
        for weight in (self.weight, self.noise_weight):
            if weight is None:
                continue
            if self.init_std > 0:
                nn.init.trunc_normal_(weight, std=self.init_std)
            else:
                nn.init.zeros_(weight)

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def task_index(self, task: TaskSpec) -> int:
        """Index of ``task`` (a name, an index, or None for a single-task router)."""
        if task is None:
            if self.num_tasks == 1:
                return 0
            raise ValueError(f'task is required: this layer routes the tasks '
                             f'{list(self.task_names)}')
        if isinstance(task, str):
            if task not in self.task_names:
                raise KeyError(f"unknown task '{task}': this layer routes the tasks "
                               f'{list(self.task_names)}')
            return self.task_names.index(task)
        if isinstance(task, int) and 0 <= task < self.num_tasks:
            return task
        raise KeyError(f'task index {task!r} out of range: this layer routes '
                       f'{self.num_tasks} tasks {list(self.task_names)}')

    def restrict(self, task: TaskSpec, experts: Sequence[int]):
        """Let ``task`` route among ``experts`` only: the others get logit -inf (probability 0)."""
        t = self.task_index(task)
        mask = torch.zeros(self.num_experts, dtype=torch.bool, device=self.weight.device)
        mask[list(experts)] = True
        if mask.sum() < self.top_k:
            raise ValueError(f"task '{self.task_names[t]}' may use {int(mask.sum())} experts, "
                             f'fewer than top_k={self.top_k}')
        if self.allowed is None:
            self.allowed = torch.ones_like(self.usage, dtype=torch.bool)
        self.allowed[t] = mask

    def forward(self, x: Tensor, task: TaskSpec = None) -> Routing:
        """Route tokens ``x`` [S, D] of one task."""
        t = self.task_index(task)
        r = 0 if self.shared else t
        dtype = torch.promote_types(x.dtype, torch.float32)
        device = x.device.type  # autocast off where it is on (entering it costs ~15 us)
        with (torch.autocast(device, enabled=False) if torch.is_autocast_enabled(device)
              else contextlib.nullcontext()):
            x = x.to(dtype)
            # logits as [E, S], the softmax over the experts as the first axis of a contiguous
            # tensor: on the CPU a softmax over a short last axis runs ~5x slower than one
            # vectorised over the tokens, and [E, D] x [D, S] is faster than [S, D] x [D, E]
            logits = torch.mm(self.weight[r].to(dtype), x.t())
            if self.noise_weight is not None and self.training:
                std = F.softplus(F.linear(x, self.noise_weight[r].to(dtype))) + self.noise_eps
                logits = logits + (torch.randn_like(std) * std).t()
            if self.allowed is not None:
                logits = logits.masked_fill(~self.allowed[t, :, None], float('-inf'))
            logits, probs = logits.t(), logits.softmax(dim=0).t()  # [S, E] views
            if self.top_k == self.num_experts:  # every token uses every expert: none to pick
                gates, experts = probs, self.expert_ids.expand(x.shape[0], -1)
            else:
                gates, experts = probs.topk(self.top_k, dim=-1)
            if self.prob_floor:
                gates = gates + self.prob_floor
            # (the probabilities of all E experts sum to 1 already)
            if self.renormalize and (self.prob_floor or self.top_k < self.num_experts):
                gates = gates / gates.sum(dim=-1, keepdim=True)
        # an exported graph keeps no statistics, a recomputed pass records none again
        if recording() and not torch.compiler.is_exporting():
            with torch.no_grad():
                chosen = experts.flatten()  # counted with a static shape: no graph break
                counts = chosen.new_zeros(self.num_experts).scatter_add_(
                    0, chosen, torch.ones_like(chosen))
                self.usage[t] += counts
                self.usage_ema[t] = torch.lerp(counts.to(self.usage_ema.dtype),
                                               self.usage_ema[t], self.usage_momentum)
        return Routing(logits, probs, experts, gates, t)

    @torch.no_grad()
    def add_tasks(self, names: Sequence[str]):
        """Append tasks ``names``, each routed by the mean of the existing routers (a shared
        router stays as it is), with no usage counted yet and every expert allowed."""
        count = len(names)
        self.task_names = resolve_tasks(self.task_names + tuple(names))
        if not self.shared:
            for attr in ('weight', 'noise_weight'):
                old = getattr(self, attr)
                if old is not None:
                    mean = old.mean(0, keepdim=True).expand(count, *old.shape[1:])
                    setattr(self, attr, nn.Parameter(torch.cat([old, mean]),
                                                     requires_grad=old.requires_grad))
        self.usage = torch.cat([self.usage, self.usage.new_zeros(count, self.num_experts)])
        self.usage_ema = torch.cat([self.usage_ema,
                                    self.usage_ema.new_zeros(count, self.num_experts)])
        if self.allowed is not None:
            self.allowed = torch.cat([self.allowed,
                                      self.allowed.new_ones(count, self.num_experts)])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Checkpoints from before ``usage_ema`` existed load with it at zero."""
        state_dict.setdefault(prefix + 'usage_ema', torch.zeros_like(self.usage_ema))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (f'tasks={list(self.task_names)}, num_experts={self.num_experts}, '
                f'top_k={self.top_k}, shared={self.shared}, renormalize={self.renormalize}, '
                f'prob_floor={self.prob_floor}, '
                f'noisy_gating={self.noise_weight is not None}')
