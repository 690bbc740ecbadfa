"""ViTDet's simple feature pyramid: a multi-scale pyramid from the last map of a plain ViT."""
import math
from typing import Sequence

import torch.nn.functional as F
from mmengine.model import BaseModule
from timm.layers import LayerNorm2d
from torch import nn

from modzoo.registry import MODELS
from modzoo.structures import Features


def _rescale(in_channels: int, scale: float) -> nn.Sequential:
    """Layers that scale a [B, D, h, w] map by ``scale`` (4, 2, 1, 1/2, 1/4, ...): 2x2
    stride-2 transposed convs (halving the width each, LayerNorm + GELU between) to go up,
    2x2 max pools to go down (ViTDet, ``SimpleFeaturePyramid``)."""
    steps = round(math.log2(scale))
    if scale <= 0 or 2 ** steps != scale:
        raise ValueError(f'SimpleFeaturePyramid scale factors must be powers of 2, got {scale}')
    layers, dim = [], in_channels
    for i in range(steps):
        if i:
            layers += [LayerNorm2d(dim), nn.GELU()]
        layers.append(nn.ConvTranspose2d(dim, dim // 2, 2, stride=2))
        dim //= 2
    layers += [nn.MaxPool2d(2, stride=2) for _ in range(-steps)]
    return nn.Sequential(*layers)


@MODELS.register_module()
class SimpleFeaturePyramid(BaseModule):
    """Pyramid of ``len(scale_factors)`` (+1) maps from the last backbone map (ViTDet).

    ``feats.maps[-1]`` [B, D, h, w] → per scale s: rescale (see ``_rescale``; width D·s for
    s > 1) → 1×1 conv + LayerNorm → 3×3 conv + LayerNorm to ``out_channels``; with
    ``top_pool`` one more level from the last by a 1×1 stride-2 max pool (detectron2's
    ``LastLevelMaxPool``, the RPN's stride-64 level). With a stride-16 ViT the default gives
    strides 4, 8, 16, 32 (and 64).

    Works on any backbone that returns maps (``ViT``, ``MoEViT`` inside the task's pass,
    ``VisualPromptViT``, ``MultiLaneViT``): it only reads the last one.

    Args:
        in_channels: backbone width D.
        out_channels: width of every pyramid level.
        scale_factors: scale of each level relative to the last map, large to small.
        top_pool: add the pooled extra level.

    ``forward(feats) -> Features(maps=([B, out, h·s, w·s] per scale, [B, out, h·s_min/2, ...]))``
    """

    def __init__(self, in_channels: int, out_channels: int = 256,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5), top_pool: bool = True,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.scale_factors = tuple(scale_factors)
        self.top_pool = top_pool
        self.levels = nn.ModuleList()
        for scale in self.scale_factors:
            width = in_channels // max(1, round(scale))  # a transposed conv halves it
            self.levels.append(nn.Sequential(
                _rescale(in_channels, scale),
                nn.Conv2d(width, out_channels, 1, bias=False), LayerNorm2d(out_channels),
                nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                LayerNorm2d(out_channels)))

    def forward(self, feats: Features) -> Features:
        x = feats.maps[-1]
        maps = [level(x) for level in self.levels]
        if self.top_pool:
            maps.append(F.max_pool2d(maps[-1], kernel_size=1, stride=2))
        return Features(maps=tuple(maps), cls_token=feats.cls_token)
