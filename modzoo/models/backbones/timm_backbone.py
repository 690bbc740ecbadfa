"""Any timm model with ``features_only`` as a backbone (Swin, ResNet-50, ConvNeXt, ...)."""
from typing import Optional, Sequence

import timm
from einops import rearrange
from mmengine.model import BaseModule

from modzoo.hub import resolve
from modzoo.registry import MODELS
from modzoo.structures import Features


@MODELS.register_module()
class TimmBackbone(BaseModule):
    """``timm.create_model(model_name, features_only=True)`` returning ``Features``.

    The maps come back NCHW whatever the model's own layout (Swin's are NHWC), shallow to
    deep; ``channels`` lists their widths and ``reductions`` their strides.

    Args:
        model_name: a timm model name, e.g. ``swin_base_patch4_window7_224``, ``resnet50``.
        out_indices: the feature levels to return (timm's numbering).
        pretrained: weights to start from, any source of :func:`modzoo.hub.resolve`
            (``timm:swin_base_patch4_window7_224.ms_in22k``, a local file, an URL); loaded
            by timm's own filter for ``features_only`` models.
        **kwargs: more ``timm.create_model`` arguments (``img_size``, ``drop_path_rate``).
    """

    def __init__(self, model_name: str, out_indices: Sequence[int] = (0, 1, 2, 3),
                 pretrained: Optional[str] = None, init_cfg=None, **kwargs):
        super().__init__(init_cfg=init_cfg)
        if model_name not in timm.list_models():
            raise KeyError(f"TimmBackbone: '{model_name}' is not a timm model; e.g. "
                           f"{timm.list_models(f'*{model_name[:4]}*')[:5]}")
        overlay = dict(file=resolve(pretrained)) if pretrained else None
        self.model = timm.create_model(model_name, features_only=True,
                                       out_indices=tuple(out_indices),
                                       pretrained=bool(pretrained),
                                       pretrained_cfg_overlay=overlay, **kwargs)
        self.channels = tuple(self.model.feature_info.channels())
        self.reductions = tuple(self.model.feature_info.reduction())
        self.channels_last = str(getattr(self.model, 'output_fmt', 'NCHW')).endswith('NHWC')

    def forward(self, x, task=None) -> Features:
        """x [B, 3, H, W] -> Features(maps: tuple of [B, C_i, H / r_i, W / r_i])."""
        maps = self.model(x)
        if self.channels_last:
            maps = [rearrange(m, 'b h w c -> b c h w') for m in maps]
        return Features(tuple(maps))
