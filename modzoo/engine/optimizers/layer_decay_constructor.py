"""Layer-wise learning-rate decay (BEiT, MAE fine-tuning): the deeper a layer, the larger its
learning rate, ``lr * rate ** (last - layer_id)``.

Layer ids come from the backbone's timm ``group_matcher(coarse=False)`` through timm's
``group_parameters``, as timm's ``param_groups_layer_decay`` takes them. For a ViT of depth L:
patch embedding, class token and position embedding are layer 0, block i is layer i + 1 (the
final norm shares the last block's), and everything outside the backbone (neck, heads) is the
last layer, L + 1, at the full learning rate.
"""
from collections import defaultdict
from typing import Dict, Tuple

from mmengine.logging import print_log
from timm.models import group_parameters
from torch import nn

from modzoo.engine.freeze import FreezeOptimWrapperConstructor
from modzoo.registry import OPTIM_WRAPPER_CONSTRUCTORS


def layer_ids(model: nn.Module, backbone: str = 'backbone') -> Tuple[Dict[str, int], int]:
    """({parameter name: layer id}, last layer id) of ``model``, whose ``backbone`` attribute
    has a timm-style ``group_matcher``; parameters outside the backbone get the last id."""
    net = getattr(model, backbone, None)
    if not hasattr(net, 'group_matcher'):
        raise TypeError(f'layer-wise lr decay needs {type(model).__name__}.{backbone} to have a '
                        f'timm-style group_matcher; it is {type(net).__name__}')
    ids = group_parameters(net, net.group_matcher(coarse=False), reverse=True)
    last = max(ids.values()) + 1
    return {f'{backbone}.{name}': i for name, i in ids.items()}, last


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(FreezeOptimWrapperConstructor):
    """Scales each parameter's learning rate by ``layer_decay_rate ** (last - layer_id)``.

    ``paramwise_cfg`` takes ``layer_decay_rate`` (in (0, 1]; BEiT-B uses 0.65, MAE-B 0.75),
    optionally ``backbone`` (the attribute holding the backbone, default ``'backbone'``), the
    freezing keys of :class:`FreezeOptimWrapperConstructor` and mmengine's keys; the scale
    multiplies whatever learning rate those give. Schedulers keep the ratios: use
    ``CosineAnnealingLR(eta_min_ratio=...)`` rather than an absolute ``eta_min``.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict = None):
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        rate = self.paramwise_cfg.get('layer_decay_rate')
        if not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ValueError(f'LayerDecayOptimWrapperConstructor: paramwise_cfg.layer_decay_rate '
                             f'must be a number in (0, 1], got {rate!r}')
        if self.base_lr is None:
            raise ValueError('LayerDecayOptimWrapperConstructor: optimizer.lr must be set')
        self.rate = float(rate)

    def add_params(self, params, module, prefix='', is_dcn_module=None):
        """mmengine's param groups (one per parameter), then each group's lr scaled."""
        super().add_params(params, module, prefix, is_dcn_module)
        if prefix:  # mmengine recurses into the children; the top-level call scales
            return
        ids, last = layer_ids(module, self.paramwise_cfg.get('backbone', 'backbone'))
        names = {id(param): name for name, param in module.named_parameters()}
        per_layer = defaultdict(int)
        for group in params:
            layer = ids.get(names[id(group['params'][0])], last)
            group['lr'] = group.get('lr', self.base_lr) * self.rate ** (last - layer)
            per_layer[layer] += group['params'][0].numel()
        table = ', '.join(f'{layer}: x{self.rate ** (last - layer):.4g} ({n:,})'
                          for layer, n in sorted(per_layer.items()))
        print_log(f'layer-wise lr decay {self.rate}: layer: lr scale (trainable parameters) '
                  f'{table}', logger='current')
