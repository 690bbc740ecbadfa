"""Extract the sub-network of one task from a multi-task MoE model (Mod-Squad ``pruning``).

Per MoE layer the task keeps the experts it uses (:func:`select_experts`); the expert
tensors, the task's router rows and its statistics are sliced to them, every other task's
routers, task-embedding rows and heads are dropped, and the config is rewritten to build
that one-task model (per-layer expert counts, one head, the task's data and metrics).

With renormalised top-k gates the extracted model computes exactly what the full model
computed for every token whose top-k experts were all kept (the softmax denominator cancels
in the renormalisation). Without renormalisation (Mod-Squad's raw gates) the gates of the
kept experts grow by 1 / (1 - the probability mass of the removed ones).
"""
import copy
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.config import Config
from torch import Tensor

from modzoo.models.backbones.moe_vit import expert_param_names
from .task_data import keep_task_data

State = Dict[str, Tensor]


def select_experts(counts: Tensor, top_k: int, thresh: float = 3.0,
                   keep_top_k: bool = False) -> List[int]:
    """Experts to keep from one task's usage ``counts`` [E] (tokens routed to each expert).

    Mod-Squad's rule: keep expert e if its share of the task's routing choices, in percent,
    exceeds ``thresh / top_k`` (3 / 4 = 0.75 % for an MLP with k = 4); if fewer than
    ``top_k`` pass, keep the ``top_k`` most used. With ``keep_top_k``, keep the ``top_k``
    most used only: the layer then runs as a dense layer of the active size (every token
    uses every kept expert, ``moe_export.py``); the tokens that chose a removed expert are
    routed among the kept ones. Returns sorted expert indices.
    """
    total = counts.sum()
    if total <= 0:
        raise ValueError('the task never routed a token through this layer: no usage to '
                         'select experts by (evaluate or train the model first, or pass --usage)')
    share = 100.0 * counts.double() / total
    keep = torch.nonzero(share > thresh / top_k).flatten()
    if keep_top_k or keep.numel() < top_k:
        keep = counts.topk(top_k).indices
    return sorted(keep.tolist())


def _slice_layer(state: State, name: str, layer, row: int, keep: List[int]) -> None:
    """Slice the state of MoE layer ``name`` in place to task row ``row`` and experts ``keep``."""
    idx = torch.tensor(keep)
    for param in expert_param_names(layer):
        state[f'{name}.{param}'] = state[f'{name}.{param}'].index_select(0, idx)
    r = 0 if layer.router.shared else row
    for key in ('router.weight', 'router.noise_weight'):
        if f'{name}.{key}' in state:
            state[f'{name}.{key}'] = state[f'{name}.{key}'][r:r + 1, idx]
    for key in ('router.usage', 'router.usage_ema'):
        state[f'{name}.{key}'] = state[f'{name}.{key}'][row:row + 1, idx]
    joint_key = f'{name}.aux_loss.mi.joint'
    if joint_key in state:  # one task: P(t, e) = p(e | t), renormalised over the kept experts
        joint = state[joint_key][row:row + 1, idx]
        state[joint_key] = joint / joint.sum().clamp(min=1e-12)


USAGE_RULES = ('ema', 'total')


def extract_task(model, cfg: Config, task: str, usage: Optional[Dict[str, Tensor]] = None,
                 thresh: float = 3.0, rule: str = 'ema', keep_top_k: bool = False
                 ) -> Tuple[Config, State, Dict[str, List[int]]]:
    """The config, state dict and kept experts of ``task``'s sub-network of ``model``.

    Args:
        model: a built :class:`MultiTaskModel` with a :class:`MoEViT` backbone, its weights
            loaded.
        cfg: the config ``model`` was built from.
        task: the task to keep.
        usage: ``{layer name: counts [T, E]}`` (names as ``backbone.blocks.1.mlp``), e.g.
            read from an ``expert_usage_*.json``; default: the routers' buffers saved in the
            checkpoint, chosen by ``rule``.
        thresh: :func:`select_experts` threshold.
        rule: without ``usage``, 'ema' (Mod-Squad's: ``usage_ema``, the 0.95 moving average
            of the task's last passes, i.e. how the trained routers route) or 'total'
            (``usage``: every token since the model was built, the early near-uniform
            routing included).
        keep_top_k: keep each layer's k most used experts only (:func:`select_experts`).

    Returns:
        (config of the one-task model, its state dict, ``{layer name: kept experts}``).
    """
    backbone = model.backbone
    if rule not in USAGE_RULES:
        raise ValueError(f'usage rule must be one of {USAGE_RULES}, got {rule!r}')
    if task not in model.heads:
        raise KeyError(f"cannot extract task '{task}': the model has the tasks "
                       f'{list(model.heads)}')
    row = backbone.task_index(task)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()
             if not k.startswith('heads.') or k.startswith(f'heads.{task}.')}
    kept = {}
    for name, layer in backbone.moe_layers():
        name = f'backbone.{name}'
        counts = torch.as_tensor(usage[name]) if usage is not None else (
            layer.router.usage_ema if rule == 'ema' else layer.router.usage)
        try:
            kept[name] = select_experts(counts[row], layer.router.top_k, thresh, keep_top_k)
        except ValueError as err:
            hint = ' (a checkpoint from before usage_ema: use the total rule)' if (
                usage is None and rule == 'ema' and layer.router.usage[row].sum() > 0) else ''
            raise ValueError(f"task '{task}', {name}: {err}{hint}") from None
        _slice_layer(state, name, layer, row, kept[name])
    if backbone.task_embedding is not None:
        state['backbone.task_embedding'] = state['backbone.task_embedding'][row:row + 1]
    return _one_task_config(cfg, task, backbone, kept), state, kept


def _one_task_config(cfg: Config, task: str, backbone, kept: Dict[str, List[int]]) -> Config:
    cfg = copy.deepcopy(cfg)
    counts = {kind: [len(kept[f'backbone.{name}']) for name, _ in backbone.moe_layers()
                     if name.endswith(kind)] for kind in ('attn', 'mlp')}
    bb = cfg.model.backbone
    bb.update(tasks=[task], moa_experts=counts['attn'], mlp_experts=counts['mlp'])
    for key in ('frozen_tasks', 'new_experts', 'init_cfg', 'pretrained'):
        bb.pop(key, None)
    cfg.model.heads = {task: cfg.model.heads[task]}
    if cfg.model.get('loss_weights'):
        cfg.model.loss_weights = {k: v for k, v in cfg.model.loss_weights.items() if k == task}
    keep_task_data(cfg, [task])
    return cfg
