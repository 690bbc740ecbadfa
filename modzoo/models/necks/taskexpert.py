"""TaskExpert neck: memorial mixture-of-experts for dense multi-task prediction.

Ye & Xu, "TaskExpert: Dynamically Assembling Multi-Task Representations with Memorial
Mixture-of-Experts", ICCV 2023. The official code was never released, so this follows the
paper's description (``research/taskexpert.md`` §1a). A Memorial MoE (MMoE) sits at each
tapped backbone layer l (a map of ``Features.maps``, in the backbone's ``out_indices``):

1. E experts decompose the layer's tokens x_l [B, C_l, h, w] into task-generic features
   f_e [B, D, h, w];
2. every task t reads its memory m_t [B, D, h, w] as an extra expert (expert E);
3. the task's gating network weighs the E + 1 experts per token (softmax over experts):
   a_t = sum_e g_e f_e + g_E m_t, the weights g [B, E + 1, h, w] computed from x_l (and
   m_t with ``gate_input='tokens+memory'``);
4. the task writes its memory: m_t <- update(m_t, a_t) (``MEMORY_UPDATES``).

The memory starts at zero before the first tapped layer; after the last one it feeds the
task's head as ``Features(maps=(m_t,))``.
"""
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from einops import rearrange
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import nn

from modzoo.registry import MODELS
from modzoo.structures import Features

EXPERT_KERNELS = {'linear': 1, 'conv': 3}
GATE_INPUTS = ('tokens', 'tokens+memory')
MEMORY_UPDATES = ('residual', 'gated', 'momentum')


def update_memory(rule: str, memory: torch.Tensor, assembled: torch.Tensor,
                  momentum: float) -> torch.Tensor:
    """The memory a layer writes, from the memory it read and the task feature it assembled
    (both [B, D, h, w]).

    - ``'residual'`` (default): m <- m + a. The memory is the task's residual stream: every
      MMoE adds the feature it assembled, so the head's input sums the task features of all
      tapped layers and its gradient reaches every layer's experts and gates directly (under
      ``'gated'`` it passes through the memory weights of all later gates). On SynthScenes
      NYUD-v2 it beat ``'gated'`` on all four tasks (configs/taskexpert/README.md).
    - ``'gated'``: m <- a. The memory is one of the experts the task's softmax gate weighs,
      so a = g_E m + (1 - g_E) * (mixture of this layer's experts): the gate is also the
      memory's per-token keep/forget gate (like a GRU's update gate), with no extra
      parameters, and the memory stays a convex combination of expert features.
    - ``'momentum'``: m <- momentum * m + (1 - momentum) * a, a fixed keep rate.
    """
    if rule == 'residual':
        return memory + assembled
    if rule == 'gated':
        return assembled
    return momentum * memory + (1 - momentum) * assembled


class Experts(nn.Module):
    """E experts, stacked in one ConvModule: x [B, C, h, w] -> features [B, E, D, h, w].

    A ``'linear'`` expert is a per-token linear map (1x1 conv), a ``'conv'`` expert a 3x3
    conv; each is followed by the norm and activation. Every output channel has its own
    filter and (channel-wise) norm, so the E experts are independent networks.
    """

    def __init__(self, in_channels: int, channels: int, num_experts: int, expert_type: str,
                 norm_cfg: Optional[dict], act_cfg: Optional[dict]):
        super().__init__()
        kernel = EXPERT_KERNELS[expert_type]
        self.num_experts = num_experts
        self.proj = ConvModule(in_channels, num_experts * channels, kernel,
                               padding=kernel // 2, norm_cfg=norm_cfg, act_cfg=act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(self.proj(x), 'b (e d) h w -> b e d h w', e=self.num_experts)


class TaskGate(nn.Module):
    """One task's gating network at one layer: a per-token linear map of the gate input
    [B, C_g, h, w] to E + 1 logits, softmax over the experts -> weights [B, E + 1, h, w]
    (the last one is the memory's).

    ``task`` and ``layer`` name the gate (used to label gate maps in visualisations).
    """

    def __init__(self, in_channels: int, num_experts: int, task: str, layer: int):
        super().__init__()
        self.fc = nn.Conv2d(in_channels, num_experts + 1, 1)
        self.task, self.layer = task, layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).float().softmax(dim=1)  # fp32 under autocast


class MemorialMoE(nn.Module):
    """The MMoE of one tapped layer: shared experts, one gate per task, the memory update.

    ``forward(x, memory, tasks)``: x [B, C, h, w] the layer's tokens; ``memory`` maps each
    task of ``tasks`` to the memory it reads [B, D, h, w]; returns the memory each task
    writes (same layout). The experts run once for all tasks.
    """

    def __init__(self, tasks: Sequence[str], in_channels: int, channels: int, num_experts: int,
                 expert_type: str, gate_input: str, memory_update: str, momentum: float,
                 norm_cfg: Optional[dict], act_cfg: Optional[dict], layer: int):
        super().__init__()
        self.experts = Experts(in_channels, channels, num_experts, expert_type, norm_cfg,
                               act_cfg)
        self.gate_input = gate_input
        gate_channels = in_channels + (channels if gate_input == 'tokens+memory' else 0)
        self.gates = nn.ModuleDict(
            {task: TaskGate(gate_channels, num_experts, task, layer) for task in tasks})
        self.memory_update = memory_update
        self.momentum = momentum

    def forward(self, x: torch.Tensor, memory: Dict[str, torch.Tensor],
                tasks: Sequence[str]) -> Dict[str, torch.Tensor]:
        experts = self.experts(x)                                    # [B, E, D, h, w]
        written = {}
        for task in tasks:
            read = memory[task]                                      # [B, D, h, w]
            gate_in = x if self.gate_input == 'tokens' else torch.cat([x, read], dim=1)
            weights = self.gates[task](gate_in)                      # [B, E + 1, h, w]
            assembled = torch.einsum('behw,bedhw->bdhw', weights[:, :-1], experts) + \
                weights[:, -1:] * read                               # [B, D, h, w]
            written[task] = update_memory(self.memory_update, read, assembled, self.momentum)
        return written


@MODELS.register_module()
class TaskExpertNeck(BaseModule):
    """TaskExpert's memorial mixture-of-experts over the tapped backbone layers.

    ``forward(features, tasks)``: ``features.maps`` [B, C_i, h_i, w_i] from any backbone
    (plain ViT, MoE ViT, pyramid backbones: a memory is resized bilinearly when the next
    tapped map has another size); returns ``{task: Features(maps=(m_t,), cls_token)}`` with
    the final memory m_t [B, channels, h, w] at the last tapped map's size and the
    backbone's class token passed through.

    Args:
        tasks: the task names; each gets a gate at every tapped layer and a memory.
        in_channels: channels of the tapped maps (one int for all, or one per ``in_index``).
        in_index: which ``features.maps`` host an MMoE, in order (the backbone's
            ``out_indices`` pick the layers those maps come from).
        channels: D, width of the experts and of the memory (what the heads receive).
        num_experts: E, experts per layer (the memory is one more).
        expert_type: ``'linear'`` (per-token linear map) or ``'conv'`` (3x3 conv).
        gate_input: ``'tokens'`` (the layer's tokens) or ``'tokens+memory'`` (the tokens and
            the task's memory, concatenated).
        memory_update: ``'residual'`` (default), ``'gated'`` or ``'momentum'``; see
            :func:`update_memory` for the rules and why ``'residual'`` is the default.
        momentum: the keep rate of ``'momentum'``, in [0, 1).
        norm_cfg, act_cfg: of the experts' ConvModules (``dict(type='SyncBN')`` for DDP).
        init_cfg: weight init.
    """

    def __init__(self,
                 tasks: Sequence[str],
                 in_channels: Union[int, Sequence[int]],
                 in_index: Sequence[int],
                 channels: int = 256,
                 num_experts: int = 8,
                 expert_type: str = 'linear',
                 gate_input: str = 'tokens',
                 memory_update: str = 'residual',
                 momentum: float = 0.5,
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='GELU'),
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.tasks = tuple(tasks)
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f'TaskExpertNeck: tasks must be distinct task names, got {tasks}')
        self.in_index = tuple(in_index)
        if isinstance(in_channels, int):
            in_channels = (in_channels, ) * len(self.in_index)
        self.in_channels = tuple(in_channels)
        if not self.in_index or len(self.in_channels) != len(self.in_index):
            raise ValueError(f'TaskExpertNeck: in_channels {in_channels} needs one entry per '
                             f'in_index {self.in_index} (at least one).')
        choices = dict(expert_type=(expert_type, tuple(EXPERT_KERNELS)),
                       gate_input=(gate_input, GATE_INPUTS),
                       memory_update=(memory_update, MEMORY_UPDATES))
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f'TaskExpertNeck: {name} must be one of {allowed}, '
                                 f'got {value!r}.')
        if not 0 <= momentum < 1:
            raise ValueError(f'TaskExpertNeck: momentum must be in [0, 1), got {momentum}.')
        if num_experts < 1 or channels < 1:
            raise ValueError(f'TaskExpertNeck: num_experts ({num_experts}) and channels '
                             f'({channels}) must be positive.')
        self.channels = channels
        self.layers = nn.ModuleList(
            MemorialMoE(self.tasks, c, channels, num_experts, expert_type, gate_input,
                        memory_update, momentum, norm_cfg, act_cfg, layer=i)
            for i, c in enumerate(self.in_channels))

    def forward(self, features: Features, tasks: Sequence[str]) -> Dict[str, Features]:
        unknown = [task for task in tasks if task not in self.tasks]
        if unknown:
            raise KeyError(f'TaskExpertNeck has no gate for task(s) {unknown}; it was built '
                           f'for tasks {list(self.tasks)}.')
        maps = self._tapped_maps(features)
        b, _, h, w = maps[0].shape
        memory = {task: maps[0].new_zeros(b, self.channels, h, w) for task in tasks}
        for layer, x in zip(self.layers, maps):
            if x.shape[-2:] != (h, w):  # a pyramid: carry the memory to this layer's size
                h, w = x.shape[-2:]
                memory = {task: F.interpolate(m, size=(h, w), mode='bilinear',
                                              align_corners=False)
                          for task, m in memory.items()}
            memory = layer(x, memory, tasks)
        return {task: Features(maps=(memory[task], ), cls_token=features.cls_token)
                for task in tasks}

    def _tapped_maps(self, features: Features) -> list:
        """The ``in_index`` maps, checked against ``in_channels``."""
        maps = []
        for i, channels in zip(self.in_index, self.in_channels):
            if not -len(features.maps) <= i < len(features.maps):
                raise IndexError(f'TaskExpertNeck: in_index {self.in_index} is out of range '
                                 f'for {len(features.maps)} backbone feature maps.')
            x = features.maps[i]
            if x.shape[1] != channels:
                raise ValueError(f'TaskExpertNeck: backbone map {i} has {x.shape[1]} channels, '
                                 f'in_channels says {channels}.')
            maps.append(x)
        return maps
