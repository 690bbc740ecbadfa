"""Mixture-of-experts ViT with task routers (Mod-Squad, Chen et al. CVPR 2023, and its
heterogeneous-training sequel, arXiv 2306.17165).

A timm ViT (:class:`ViT`) whose blocks may swap their attention for a mixture of attention
heads (MoA: per-task routed query experts, each with its own query and output projection,
top-k = number of heads, one shared key/value head) and/or their MLP for a mixture-of-experts
MLP (E experts, top-k). ``moa_layers`` and ``mlp_layers`` list the blocks; Mod-Squad's
"twice" layout puts MoA in the even blocks and the MoE MLP in the odd ones. Parameter names
stay timm's (``blocks.{i}.attn.q_weight``, ``blocks.{i}.mlp.fc1_weight``, ``norm`` ...).

Modularity, all configured when the model is built (so a config rebuilds it):

* ``init_cfg=dict(type='Pretrained', checkpoint=...)`` upcycles a dense timm ViT
  checkpoint (:meth:`MoEViT.upcycle`);
* per-layer expert counts (``moa_experts=[...]``) describe an extracted sub-network
  (``tools/extract.py``); ``experts_from=SOURCE`` reads them from its checkpoint, so a
  config of the sub-network is the source config plus that key;
* ``frozen_tasks`` + ``new_experts`` describe a model expanded with new tasks
  (:mod:`modzoo.analysis.expansion`): the old tasks route among the old experts only, and
  nothing they compute with gets a gradient;
* ``n_bias_sets`` gives it task-specific bias sets (Chameleon's image encoder): one task per
  bias set, and ``forward(x, task)`` with ``task`` [B] routes and biases every sample by its
  own task.
"""
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import print_log
from timm.layers import Attention
from timm.models import checkpoint
from torch import Tensor, nn

from modzoo.models.layers.bias_sets import add_bias_sets, bias_set_parameters, keep_bias_set_index
from modzoo.models.layers.mixture_of_attention import MixtureOfAttentionHeads
from modzoo.models.layers.moe_losses import sum_aux_losses
from modzoo.models.layers.moe_mlp import MoEMlp
from modzoo.models.layers.moe_router import record_once, resolve_tasks
from modzoo.registry import MODELS
from modzoo.structures import Features
from modzoo.weights import load_state_dict
from .vit import ARCHS, ViT


def _twice(depth: int) -> dict:
    """Mod-Squad's "twice" layout: MoA in the even blocks, MoE MLP in the odd ones."""
    return dict(moa_layers=list(range(0, depth, 2)), mlp_layers=list(range(1, depth, 2)))


def _every(depth: int) -> dict:
    """MoA and MoE MLP in every block (the non-"twice" Mod-Squad configs)."""
    return dict(moa_layers=list(range(depth)), mlp_layers=list(range(depth)))


# Plain sizes: timm's widths (so timm checkpoints upcycle) with the MOE_DEFAULTS layout.
MOE_ARCHS = {name: dict(size) for name, size in ARCHS.items()}
# The Mod-Squad configs of research/modsquad.md (models_mt.py at 1d17e81): head width
# 2D / heads everywhere (the dense attention too), raw top-k gates (no renormalisation) plus
# the router's 1e-4 probability floor, a task embedding added before every block, the
# classification feature fc_norm(mean patch token), the official expert init. Their 1-expert
# "dense-equivalent" MLP is a dense MLP here (tools/model_converters/modsquad_official.py
# builds it as a 1-expert MoE MLP when it converts their weights).
_MODSQUAD = dict(head_dims=128, renormalize=False, prob_floor=1e-4, task_embedding=True,
                 global_pool='avg', expert_init='modsquad')
MOE_ARCHS.update({
    # mtvit_taskgate_att_mlp_small_MI_twice
    'modsquad-small-twice': dict(**ARCHS['small'], **_twice(12), **_MODSQUAD, moa_experts=15,
                                 mlp_experts=16, mlp_top_k=4, mi_weight=0.005),
    # mtvit_taskgate_att_mlp_base_MI_twice (the README default)
    'modsquad-base-twice': dict(**ARCHS['base'], **_twice(12), **_MODSQUAD, moa_experts=24,
                                mlp_experts=16, mlp_top_k=4, mi_weight=0.005),
    # mtvit_taskgate_small_att_MI
    'modsquad-small-att': dict(**ARCHS['small'], moa_layers=list(range(12)), mlp_layers=[],
                               **_MODSQUAD, moa_experts=15, mi_weight=0.0005),
    # mtvit_taskgate_mlp16E4_small_MI
    'modsquad-small-mlp16e4': dict(**ARCHS['small'], **_every(12), **_MODSQUAD, moa_experts=6,
                                   mlp_experts=16, mlp_top_k=4, mi_weight=0.03),
    # m3vit_taskgate_mlp16E4_small (M3ViT re-implemented in Mod-Squad's code)
    'm3vit-small': dict(**ARCHS['small'], **_every(12), **_MODSQUAD, moa_experts=6,
                        mlp_experts=16, mlp_top_k=4, noisy_gating=True, balance_weight=0.01,
                        z_weight=0.001),
})
SIZE_KEYS = ('embed_dim', 'depth', 'num_heads', 'mlp_ratio')
# Unset layers give the twice layout, unset MoA experts 2 x heads; the MLP default is
# Mod-Squad's: 16 experts of hidden 4D/k, top-4.
MOE_DEFAULTS = dict(head_dims=None, moa_layers=None, mlp_layers=None, moa_experts=None,
                    mlp_experts=16, mlp_top_k=4, mlp_hidden_dims=None, renormalize=True,
                    noisy_gating=False, prob_floor=0.0, mi_weight=0.0, balance_weight=0.0,
                    z_weight=0.0, task_embedding=False, global_pool='token',
                    expert_init='timm')
# The parameters of a MoE layer whose first axis runs over the experts.
EXPERT_PARAMS = {MoEMlp: ('fc1_weight', 'fc1_bias', 'fc2_weight', 'fc2_bias'),
                 MixtureOfAttentionHeads: ('q_weight', 'out_weight')}
# The key of an expert parameter [E, ...] per MoE layer, in a backbone's or a whole model's
# state dict: its first axis counts the layer's experts.
EXPERT_KEY = re.compile(r'^(?:backbone\.)?blocks\.(\d+)\.(attn\.q_weight|mlp\.fc1_weight)$')


def expert_param_names(layer: nn.Module) -> Tuple[str, ...]:
    """Names of ``layer``'s [E, ...] expert parameters (a MoEMlp or MoA layer)."""
    return next(names for kind, names in EXPERT_PARAMS.items() if isinstance(layer, kind))


def _resolve_arch(arch: Union[str, dict], overrides: dict) -> Tuple[dict, dict]:
    """(ViT size dict, MoE settings) of a preset name or dict, with non-None ``overrides``."""
    if isinstance(arch, str):
        if arch not in MOE_ARCHS:
            raise ValueError(f"MoEViT arch '{arch}' is not one of {sorted(MOE_ARCHS)} "
                             '(or a dict).')
        arch = MOE_ARCHS[arch]
    unknown = set(arch) - set(SIZE_KEYS) - set(MOE_DEFAULTS)
    if unknown:
        raise ValueError(f'MoEViT arch dict has unknown keys {sorted(unknown)}; allowed: '
                         f'{list(SIZE_KEYS) + list(MOE_DEFAULTS)}')
    size = {k: v for k, v in arch.items() if k in SIZE_KEYS}
    moe = {**MOE_DEFAULTS, **{k: v for k, v in arch.items() if k in MOE_DEFAULTS},
           **{k: v for k, v in overrides.items() if v is not None}}
    return size, moe


def checkpoint_experts(source: str) -> dict:
    """``dict(moa_layers, moa_experts, mlp_layers, mlp_experts)`` of the MoEViT weights of
    ``source`` (any source :func:`modzoo.weights.load_state_dict` takes: a path, a
    ``modzoo://`` name ...): the blocks whose attention / MLP is a MoE layer and each one's
    expert count, e.g. those of a sub-network that ``tools/extract.py`` wrote."""
    counts = dict(attn={}, mlp={})
    for key, value in load_state_dict(source).items():
        match = EXPERT_KEY.match(key)
        if match:
            counts[match.group(2).split('.')[0]][int(match.group(1))] = value.shape[0]
    if not counts['attn'] and not counts['mlp']:
        raise ValueError(f'experts_from={source!r}: the checkpoint has no MoE layer (no '
                         'blocks.N.attn.q_weight or blocks.N.mlp.fc1_weight, under backbone. '
                         'or not)')
    plan = {}
    for kind, layers in (('moa', counts['attn']), ('mlp', counts['mlp'])):
        plan[f'{kind}_layers'] = sorted(layers)
        # no layer of this kind: the preset's count applies to none
        plan[f'{kind}_experts'] = [layers[i] for i in sorted(layers)] or None
    return plan


def _per_layer(value, layers: List[int], name: str) -> List[int]:
    """One expert count per MoE layer from an int or a list."""
    if isinstance(value, int):
        return [value] * len(layers)
    if value is None or len(value) != len(layers):
        raise ValueError(f'MoEViT {name}={value!r} must be an int or one count per layer of '
                         f'{layers}')
    return list(value)


def _expert_plan(moe: dict, depth: int, num_heads: int) -> Tuple[Dict[int, int], Dict[int, int]]:
    """``({block: MoA experts}, {block: MoE-MLP experts})`` of the MoE settings, checked."""
    plan = []
    defaults = dict(moa=(num_heads, 2 * num_heads), mlp=(moe['mlp_top_k'], None))
    for kind, (top_k, default) in defaults.items():
        layers = moe[f'{kind}_layers']
        layers = _twice(depth)[f'{kind}_layers'] if layers is None else list(layers)
        bad = [i for i in layers if not (isinstance(i, int) and 0 <= i < depth)]
        if bad or len(set(layers)) != len(layers):
            raise ValueError(f'MoEViT {kind}_layers={layers}: every entry must be a distinct '
                             f'block index in [0, {depth - 1}] for depth {depth}; got {bad}')
        layers = sorted(layers)
        counts = _per_layer(moe[f'{kind}_experts'] or default, layers, f'{kind}_experts')
        for i, num in zip(layers, counts):
            if not 1 <= top_k <= num:
                raise ValueError(f'MoEViT block {i}: {kind} top-k {top_k} must be in [1, '
                                 f'{kind}_experts={num}] (the MoA top-k is num_heads)')
        plan.append(dict(zip(layers, counts)))
    return tuple(plan)


class _Routed:
    """Gives a MoE layer the interface of the timm sublayer it replaces ([B, N, D] -> [B, N, D]):
    MoEViT sets ``task`` before each pass and collects ``aux_losses`` after it."""
    task = None
    aux_losses: Dict[str, Tensor] = {}

    def forward(self, x: Tensor, attn_mask=None, is_causal: bool = False) -> Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError(f'{type(self).__name__} takes no attention mask')
        out, self.aux_losses = super().forward(x, self.task)
        return out


class RoutedMlp(_Routed, MoEMlp):
    """:class:`MoEMlp` in the place of a timm ``Mlp``."""


class RoutedAttention(_Routed, MixtureOfAttentionHeads):
    """:class:`MixtureOfAttentionHeads` in the place of a timm ``Attention``."""


@MODELS.register_module()
class MoEViT(ViT):
    """ViT whose blocks mix task-routed experts; ``forward(x, task)`` returns ``Features`` with
    the MoE layers' auxiliary losses (``loss_moe_*``, training only).

    Args:
        arch: a name of ``MOE_ARCHS`` ('tiny' | 'small' | 'base' | 'large', the Mod-Squad
            configs 'modsquad-small-twice', 'modsquad-base-twice', 'modsquad-small-att',
            'modsquad-small-mlp16e4', 'm3vit-small'), or a dict of ``SIZE_KEYS`` and any of
            the MoE settings below. The settings given as arguments override the preset's.
        tasks: task names (or a count); one router per task and MoE layer. Default: one task,
            or one per bias set.
        head_dims: attention head width d, of the MoA experts and of the dense attention
            (default D / heads; Mod-Squad: 2D / heads).
        moa_layers, mlp_layers: block indices whose attention is MoA / whose MLP is MoE.
        moa_experts, mlp_experts: experts per MoA / MoE-MLP layer (an int, or one per layer).
            The MoA top-k is ``num_heads``.
        mlp_top_k: experts per token of the MoE MLPs.
        mlp_hidden_dims: expert hidden width (default mlp_ratio * D / k: the k active
            experts cost one dense MLP).
        renormalize, noisy_gating, prob_floor, capacity_factor, router_init_std: see
            :class:`TaskRouter` and :class:`MoEMlp`.
        task_embedding: a learned embedding per task ``task_embedding`` [T, D], added to
            every token before every block (Mod-Squad).
        global_pool: 'token' or 'avg' (Mod-Squad: fc_norm of the mean patch token), see
            :class:`ViT`.
        expert_init: 'timm' (trunc-normal 0.02, zero biases) or 'modsquad' (the official
            uniform init of the experts, and the task embedding N(0, 1) as the official
            ``torch.randn``; the timm init draws it with std 0.02); see
            :func:`~modzoo.models.layers.moe_mlp.init_experts`.
        mi_weight, balance_weight, z_weight, mi_momentum: auxiliary losses, see
            :class:`MoEAuxLoss`.
        experts_from: a checkpoint (a path or any weights source, e.g.
            ``modzoo://NAME``) whose MoE layers set ``moa_layers``, ``mlp_layers``,
            ``moa_experts`` and ``mlp_experts`` (:func:`checkpoint_experts`), overriding those
            of ``arch`` and the arguments: the shape of an extracted sub-network. Only the
            shape: its weights load with ``load_from`` (or ``init_cfg``).
        frozen_tasks, new_experts: expansion. The last ``new_experts`` experts of every MoE
            layer were added for the tasks not in ``frozen_tasks``. Frozen tasks route among
            the other experts only, and nothing they compute with gets a gradient: the
            dense parameters get ``requires_grad=False``, the old experts' rows and the
            frozen tasks' router rows have their gradient zeroed. AdamW's decoupled weight
            decay would still shrink those rows: give the expert and router parameters
            ``decay_mult=0`` (``modzoo.analysis.expansion`` writes that into the config).
        **kwargs: img_size, patch_size, in_channels, out_indices, final_norm,
            drop_path_rate, qkv_bias, with_cls_token, n_bias_sets, pretrained, init_cfg of
            :class:`ViT`. With ``n_bias_sets`` the dense Linear and LayerNorm biases of every
            block (the MoA key/value projection included; the experts keep theirs) are bias
            sets, one per task.
            ``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` names a dense timm ViT
            checkpoint to upcycle; a MoEViT checkpoint loads with ``load_from``.
    """
    task_conditioned = True

    def __init__(self,
                 arch: Union[str, dict] = 'small',
                 tasks: Union[int, Sequence[str], None] = None,
                 head_dims: Optional[int] = None,
                 moa_layers: Optional[Sequence[int]] = None,
                 mlp_layers: Optional[Sequence[int]] = None,
                 moa_experts: Union[int, Sequence[int], None] = None,
                 mlp_experts: Union[int, Sequence[int], None] = None,
                 mlp_top_k: Optional[int] = None,
                 mlp_hidden_dims: Optional[int] = None,
                 renormalize: Optional[bool] = None,
                 noisy_gating: Optional[bool] = None,
                 prob_floor: Optional[float] = None,
                 task_embedding: Optional[bool] = None,
                 global_pool: Optional[str] = None,
                 expert_init: Optional[str] = None,
                 capacity_factor: Optional[float] = None,
                 mi_weight: Optional[float] = None,
                 balance_weight: Optional[float] = None,
                 z_weight: Optional[float] = None,
                 mi_momentum: float = 0.99,
                 router_init_std: float = 0.02,
                 frozen_tasks: Sequence[str] = (),
                 new_experts: int = 0,
                 experts_from: Optional[str] = None,
                 **kwargs):
        if experts_from is not None:
            plan = checkpoint_experts(experts_from)
            moa_layers, moa_experts = plan['moa_layers'], plan['moa_experts']
            mlp_layers, mlp_experts = plan['mlp_layers'], plan['mlp_experts']
        size, moe = _resolve_arch(arch, dict(
            head_dims=head_dims, moa_layers=moa_layers, mlp_layers=mlp_layers,
            moa_experts=moa_experts, mlp_experts=mlp_experts, mlp_top_k=mlp_top_k,
            mlp_hidden_dims=mlp_hidden_dims, renormalize=renormalize, noisy_gating=noisy_gating,
            prob_floor=prob_floor, mi_weight=mi_weight, balance_weight=balance_weight,
            z_weight=z_weight, task_embedding=task_embedding, global_pool=global_pool,
            expert_init=expert_init))
        kwargs['global_pool'] = moe['global_pool']
        super().__init__(arch=size, **kwargs)
        self.task_names = resolve_tasks(tasks or self.n_bias_sets or 1)
        if self.n_bias_sets and len(self.task_names) != self.n_bias_sets:
            raise ValueError(f'MoEViT routes one task per bias set: tasks={tasks!r} gives '
                             f'{len(self.task_names)} tasks, n_bias_sets={self.n_bias_sets}')
        self.dense_arch = size
        self.vit_kwargs = {k: v for k, v in kwargs.items()
                           if k not in ('pretrained', 'init_cfg', 'n_bias_sets')}
        self.task_embedding = None
        if moe['task_embedding']:
            self.task_embedding = nn.Parameter(torch.empty(len(self.task_names), self.embed_dim))
            nn.init.normal_(self.task_embedding, std=1.0 if moe['expert_init'] == 'modsquad'
                            else 0.02)
        self._task_row = 0
        dims, num_heads = self.embed_dim, size['num_heads']
        head_dims = moe['head_dims'] or dims // num_heads
        moa_experts, mlp_experts = _expert_plan(moe, len(self.blocks), num_heads)
        top_k = moe['mlp_top_k']
        router = dict(tasks=self.task_names, renormalize=moe['renormalize'],
                      noisy_gating=moe['noisy_gating'], capacity_factor=capacity_factor,
                      mi_weight=moe['mi_weight'], balance_weight=moe['balance_weight'],
                      z_weight=moe['z_weight'], mi_momentum=mi_momentum,
                      router_init_std=router_init_std, prob_floor=moe['prob_floor'],
                      expert_init=moe['expert_init'])
        hidden = moe['mlp_hidden_dims'] or int(size.get('mlp_ratio', 4.0) * dims) // top_k
        qkv_bias = kwargs.get('qkv_bias', True)
        for i, block in enumerate(self.blocks):
            if i in moa_experts:
                block.attn = RoutedAttention(dims, moa_experts[i], num_heads, head_dims,
                                             kv_bias=qkv_bias, **router)
            elif head_dims != block.attn.head_dim:
                block.attn = Attention(dims, num_heads, attn_head_dim=head_dims,
                                       qkv_bias=qkv_bias)
            if i in mlp_experts:
                block.mlp = RoutedMlp(dims, mlp_experts[i], top_k, hidden, **router)
        if self.n_bias_sets:    # the layers the MoE surgery put in
            add_bias_sets(self.blocks, self.n_bias_sets)
        if frozen_tasks:
            self._freeze_old_tasks(list(frozen_tasks), new_experts)

    # ---------------------------------------------------------------- structure
    def moe_layers(self) -> List[Tuple[str, nn.Module]]:
        """``[(name, layer)]`` of the MoE layers in block order (``'blocks.3.mlp'`` ...)."""
        return [(f'blocks.{i}.{kind}', getattr(block, kind))
                for i, block in enumerate(self.blocks) for kind in ('attn', 'mlp')
                if isinstance(getattr(block, kind), _Routed)]

    def task_index(self, task: Optional[str]) -> int:
        """Index of ``task`` in ``task_names`` (None for a single-task model)."""
        if task is None and len(self.task_names) == 1:
            return 0
        if task not in self.task_names:
            raise KeyError(f'MoEViT got task {task!r}; it routes the tasks '
                           f'{list(self.task_names)} (its `tasks` argument)')
        return self.task_names.index(task)

    # ---------------------------------------------------------------- forward
    def forward(self, x: Tensor, task: Union[str, Tensor, None] = None) -> Features:
        """x [B, C_in, H, W] of one task -> ``Features`` as :class:`ViT`, with ``aux_losses``
        the summed ``loss_moe_*`` of the MoE layers ({} in evaluation).

        With bias sets, ``task`` is a long tensor [B], each sample's task (its bias set and
        router): the samples of each task pass together, the outputs come back in the input
        order and the aux losses of the tasks are summed.
        """
        if not torch.is_tensor(task):
            return self._forward_task(x, self.task_index(task), None)
        if not self.n_bias_sets:
            raise ValueError(f'MoEViT without bias sets routes one task per pass: task must be '
                             f'one of {list(self.task_names)}, got a tensor')
        rows = self._bias_set_rows(task, x.shape[0])
        groups = [(rows == t).nonzero()[:, 0] for t in rows.unique().tolist()]
        parts = [self._forward_task(x[g], int(rows[g[0]]), rows[g]) for g in groups]
        back = torch.cat(groups).argsort()
        maps = tuple(torch.cat(level)[back] for level in zip(*(f.maps for f in parts)))
        cls = None if parts[0].cls_token is None else torch.cat(
            [f.cls_token for f in parts])[back]
        return Features(maps=maps, cls_token=cls,
                        aux_losses=sum_aux_losses(f.aux_losses for f in parts))

    def _forward_task(self, x: Tensor, row: int, bias_rows: Optional[Tensor]) -> Features:
        """x [B, C_in, H, W] of the task ``task_names[row]`` (bias-set rows ``bias_rows``)."""
        self._task_row = row
        layers = [layer for _, layer in self.moe_layers()]
        for layer in layers:
            layer.task = self.task_names[row]
        feats = super().forward(x, bias_rows)
        aux = sum_aux_losses(layer.aux_losses for layer in layers)
        for layer in layers:
            layer.aux_losses = {}
        return feats._replace(aux_losses=aux)

    def _run_block(self, i: int, x: Tensor) -> Tensor:
        """Block i on the tokens x [B, N, D], after adding the task's embedding [D]. With
        gradient checkpointing the block's routers record their statistics once, not again
        when the backward pass recomputes the block."""
        if self.task_embedding is not None:
            x = x + self.task_embedding[self._task_row]
        if self.grad_checkpointing:
            return checkpoint(keep_bias_set_index(record_once(self.blocks[i])), x)
        return self.blocks[i](x)

    # ---------------------------------------------------------------- task parameters
    def task_parameters(self) -> List[Tuple[str, nn.Parameter]]:
        """(name, parameter) of the tables with a row per task: the bias sets, the routers
        (unless shared) and the task embedding."""
        params = bias_set_parameters(self)
        for name, layer in self.moe_layers():
            if not layer.router.shared:
                params += [(f'{name}.router.{n}', p)
                           for n, p in layer.router.named_parameters()]
        if self.task_embedding is not None:
            params.append(('task_embedding', self.task_embedding))
        return params

    @torch.no_grad()
    def add_tasks(self, count: int) -> None:
        """Append ``count`` tasks (few-shot adaptation), routed by the mean of the existing
        routers and embedded by the mean task embedding; the caller grows the bias sets."""
        names = [str(len(self.task_names) + i) for i in range(count)]
        for _, layer in self.moe_layers():
            layer.router.add_tasks(names)
            if layer.aux_loss.mi is not None:
                layer.aux_loss.mi.add_tasks(count)
        if self.task_embedding is not None:
            mean = self.task_embedding.mean(0, keepdim=True).expand(count, -1)
            self.task_embedding = nn.Parameter(torch.cat([self.task_embedding, mean]))
        self.task_names += tuple(names)

    # ---------------------------------------------------------------- weights
    def init_weights(self, mode: str = '', needs_reset: bool = True) -> None:
        """timm's random init, or upcycle the dense timm checkpoint of ``init_cfg``."""
        if self.init_cfg is None:
            super().init_weights(mode, needs_reset)
            return
        dense = ViT(arch=self.dense_arch, **self.vit_kwargs)
        dense.load_timm_checkpoint(self.init_cfg['checkpoint'], self.init_cfg.get('prefix'))
        self.upcycle(dense)
        self._is_init = True

    @torch.no_grad()
    def upcycle(self, dense: nn.Module) -> None:
        """Fill this model from a dense timm ViT ``dense`` of the same widths.

        Every parameter outside the MoE layers and the task embedding is copied. Each MoE MLP
        is filled by :meth:`MoEMlp.upcycle`: with expert hidden size H = dense hidden, every
        expert is a copy of the dense MLP (with renormalised gates the layer then equals it); with
        dense hidden = G * H the dense hidden units are split into G contiguous chunks and
        expert e takes chunk e mod G (its fc2 columns times G). Each MoA layer is filled by
        :meth:`MixtureOfAttentionHeads.upcycle` (an approximation: expert e is head e mod H,
        keys and values mean-pooled). The routers start fresh. A dense bias fills every row
        of the bias sets.
        """
        routed = dict(self.moe_layers())
        inside = tuple(name + '.' for name in routed) + ('task_embedding', )
        theirs = dense.state_dict()
        own = {k: v for k, v in self.state_dict().items() if not k.startswith(inside)}
        tables = {name for name, _ in bias_set_parameters(self)}
        bad = {k: (tuple(v.shape), tuple(theirs[k].shape) if k in theirs else None)
               for k, v in own.items() if k not in theirs or theirs[k].shape not in (
                   v.shape, v.shape[1:] if k in tables else None)}
        if bad:
            raise ValueError(f'cannot upcycle: these MoEViT keys have no dense twin of the same '
                             f'shape (MoEViT shape, dense shape): {bad}')
        self.load_state_dict({k: theirs[k] for k in own}, strict=False)
        for name, layer in routed.items():
            layer.upcycle(dense.get_submodule(name))
            layer.router.reset_parameters()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Refuse a checkpoint whose MoE layers have other expert or task counts."""
        for name, layer in self.moe_layers():
            weight = state_dict.get(f'{prefix}{name}.router.weight')
            if weight is None:
                continue
            have = (weight.shape[0], weight.shape[1])
            want = (layer.router.weight.shape[0], layer.num_experts)
            if have != want:
                raise ValueError(
                    f'checkpoint {name} routes {have[0]} task(s) over {have[1]} experts, but '
                    f'the config builds {want[0]} task(s) {list(self.task_names)} over '
                    f'{want[1]} experts (MoEViT tasks / moa_experts / mlp_experts); an '
                    'extracted or expanded checkpoint loads with the config written beside it, '
                    'or give the config experts_from=<the checkpoint>')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---------------------------------------------------------------- freezing
    def _freeze_old_tasks(self, frozen_tasks: List[str], new_experts: int):
        unknown = [t for t in frozen_tasks if t not in self.task_names]
        if unknown or len(frozen_tasks) >= len(self.task_names):
            raise ValueError(f'MoEViT frozen_tasks {frozen_tasks} must be some but not all of '
                             f'tasks {list(self.task_names)}')
        new_tasks = set(self.task_names) - set(frozen_tasks)
        self.requires_grad_(False)
        frozen_rows = [self.task_names.index(t) for t in frozen_tasks]
        for name, layer in self.moe_layers():
            old = layer.num_experts - new_experts
            if not (0 < new_experts and old >= layer.router.top_k):
                raise ValueError(f'MoEViT new_experts={new_experts} must be >= 1 and leave at '
                                 f'least top-k={layer.router.top_k} of the '
                                 f'{layer.num_experts} experts of {name} to the frozen tasks')
            for task in frozen_tasks:
                layer.router.restrict(task, range(old))
            _freeze_rows(layer.router.weight, frozen_rows)
            if layer.router.noise_weight is not None:
                _freeze_rows(layer.router.noise_weight, frozen_rows)
            for param_name in expert_param_names(layer):
                _freeze_rows(getattr(layer, param_name), range(old))
        if self.task_embedding is not None:
            _freeze_rows(self.task_embedding, frozen_rows)
        total = sum(p.numel() for p in self.parameters())
        print_log(f'MoEViT: {self.num_trainable_params():,} of {total:,} backbone parameters '
                  f'train (the new experts and routers of {sorted(new_tasks)})',
                  logger='current')

    def num_trainable_params(self) -> int:
        """Parameters that train: ``requires_grad`` ones, less the rows whose gradient is
        zeroed (expansion)."""
        return sum(int(getattr(p, 'trainable_rows', torch.ones(1)).float().mean() * p.numel())
                   for p in self.parameters() if p.requires_grad)


def _freeze_rows(param: nn.Parameter, rows: Sequence[int]) -> None:
    """Zero the gradient of ``param``'s ``rows`` (first axis); the others train."""
    keep = torch.ones(param.shape[0], dtype=torch.bool)
    keep[list(rows)] = False
    param.trainable_rows = keep
    param.requires_grad_(True)
    mask = keep.to(param.dtype).view(-1, *([1] * (param.dim() - 1)))
    param.register_hook(lambda grad: grad * mask.to(grad.device))
