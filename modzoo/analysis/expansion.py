"""Add a task to a trained multi-task MoE model without changing the old tasks (Mod-Squad's
continual learning by adding experts, ``main_continual.py: load_frozen``).

Every MoE layer grows by ``new_experts`` experts, copies of the layer's most used ones, and
every router by a fresh row for the new task (the task embedding, if any, by the mean of its
rows). The rewritten config builds the model with ``frozen_tasks`` (see :class:`MoEViT`):
the old tasks route among the old experts only, and the dense weights, old experts, old
routers and old task-embedding rows get no gradient. Training on the new task's
data alone then leaves the old tasks' predictions unchanged: their heads get no gradient
either, and the config gives the expert and router tensors no weight decay (decoupled decay
would shrink the frozen rows).
"""
import copy
from typing import Dict, Tuple

import torch
from mmengine.config import Config
from torch import Tensor, nn

from modzoo.models.backbones.moe_vit import EXPERT_PARAMS, expert_param_names

# substrings of the stacked expert and router tensors' names (mmengine ``custom_keys``)
STACKED_KEYS = tuple(sorted({n for names in EXPERT_PARAMS.values() for n in names})) + (
    'router.weight', 'router.noise_weight', 'task_embedding')


def expand_model(model, cfg: Config, task: str, head: dict, new_experts: int
                 ) -> Tuple[Config, Dict[str, Tensor]]:
    """The config and state dict of ``model`` with the new ``task`` added.

    Args:
        model: a built :class:`MultiTaskModel` with a :class:`MoEViT` backbone, its
            weights loaded.
        cfg: the config ``model`` was built from.
        task: the new task's name.
        head: the new task's head config.
        new_experts: experts added to every MoE layer (at most the layer's expert count).

    The caller points the config's data at the new task (training) and adds its metric.
    """
    backbone = model.backbone
    if task in backbone.task_names:
        raise ValueError(f"task '{task}' is already one of {list(backbone.task_names)}")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    counts = {'attn': [], 'mlp': []}
    for name, layer in backbone.moe_layers():
        if not 0 < new_experts <= layer.num_experts:
            raise ValueError(f'new_experts={new_experts} must be in [1, {layer.num_experts}] '
                             f'(the experts of backbone.{name})')
        _grow_layer(state, f'backbone.{name}', layer, new_experts,
                    cfg.model.backbone.get('router_init_std', 0.02))
        counts[name.rsplit('.', 1)[1]].append(layer.num_experts + new_experts)
    if backbone.task_embedding is not None:  # the new task starts from the mean task
        embedding = state['backbone.task_embedding']
        state['backbone.task_embedding'] = torch.cat([embedding, embedding.mean(0, True)])

    cfg = copy.deepcopy(cfg)
    cfg.model.backbone.update(tasks=list(backbone.task_names) + [task],
                              moa_experts=counts['attn'], mlp_experts=counts['mlp'],
                              frozen_tasks=list(backbone.task_names), new_experts=new_experts)
    cfg.model.backbone.pop('init_cfg', None)
    cfg.model.heads[task] = head
    paramwise = cfg.optim_wrapper.setdefault('paramwise_cfg', {})
    custom = paramwise.setdefault('custom_keys', {})
    custom.update({key: dict(decay_mult=0.0) for key in STACKED_KEYS})
    return cfg, state


@torch.no_grad()
def _grow_layer(state: Dict[str, Tensor], name: str, layer: nn.Module, n: int,
                init_std: float) -> None:
    """Append ``n`` experts (copies of the most used) and a router row for one new task."""
    source = layer.router.usage.sum(0).argsort(descending=True, stable=True)[:n]
    for param in expert_param_names(layer):
        weight = state[f'{name}.{param}']
        state[f'{name}.{param}'] = torch.cat([weight, weight[source]])
    for key in ('router.weight', 'router.noise_weight'):
        if f'{name}.{key}' not in state:
            continue
        weight = state[f'{name}.{key}']  # [T, E, D]
        weight = torch.cat([weight, weight[:, source]], dim=1)
        if not layer.router.shared:
            row = torch.empty_like(weight[:1])
            weight = torch.cat([weight, nn.init.trunc_normal_(row, std=init_std)])
        state[f'{name}.{key}'] = weight
    for key in ('router.usage', 'router.usage_ema'):
        usage = state[f'{name}.{key}']
        state[f'{name}.{key}'] = torch.zeros(usage.shape[0] + 1, usage.shape[1] + n,
                                             dtype=usage.dtype)
        state[f'{name}.{key}'][:-1, :-n] = usage
    joint = state.get(f'{name}.aux_loss.mi.joint')
    if joint is not None:  # the MI estimate starts again (uniform) for the new task set
        shape = (joint.shape[0] + 1, joint.shape[1] + n)
        state[f'{name}.aux_loss.mi.joint'] = torch.full(shape, 1.0 / (shape[0] * shape[1]))
        state[f'{name}.aux_loss.mi.num_updates'] = torch.zeros_like(
            state[f'{name}.aux_loss.mi.num_updates'])
