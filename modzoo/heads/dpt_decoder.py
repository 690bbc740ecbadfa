"""DPT label decoder (reassemble + RefineNet fusion), as Chameleon and VTM use it.

Four token maps of stride p are reassembled to strides p/4, p/2, p, 2p (1x1 conv, then a
transposed conv up or a strided conv down), projected to ``features`` channels, fused deep
to shallow (each fusion block upsamples by 2), and a head upsamples to the image size.
"""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from modzoo.registry import MODELS


class ResidualConvUnit(nn.Module):
    """x + conv(relu(conv(relu(x)))), 3x3 convs with bias. [B, C, H, W] -> same."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """(deeper [B, C, H, W], skip [B, C, H, W] or None) -> [B, C, 2H, 2W]."""

    def __init__(self, channels: int):
        super().__init__()
        self.residual1 = ResidualConvUnit(channels)
        self.residual2 = ResidualConvUnit(channels)
        self.out_conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.residual1(skip)
        x = F.interpolate(self.residual2(x), scale_factor=2, mode='bilinear', align_corners=True)
        return self.out_conv(x)


def _reassemble(in_channels: int, out_channels: int, level: int) -> nn.Sequential:
    """1x1 conv, then x4 / x2 up (levels 0, 1), nothing (2) or x2 down (3)."""
    layers = [nn.Conv2d(in_channels, out_channels, 1)]
    if level < 2:
        scale = 2 ** (2 - level)
        layers.append(nn.ConvTranspose2d(out_channels, out_channels, scale, stride=scale))
    elif level == 3:
        layers.append(nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1))
    return nn.Sequential(*layers)


@MODELS.register_module()
class DPTLabelDecoder(nn.Module):
    """Args:
        in_channels: width of the label tokens.
        hidden_channels: reassemble widths of the 4 levels (Chameleon: [256, 512, 1024, 1024],
            VTM: [96, 192, 384, 768]).
        features: fusion width (256).
        out_channels: output channels (1: one label channel per sub-task).
    """

    def __init__(self, in_channels: int, hidden_channels: Sequence[int] = (256, 512, 1024, 1024),
                 features: int = 256, out_channels: int = 1):
        super().__init__()
        self.resamplers = nn.ModuleList(
            _reassemble(in_channels, hidden_channels[i], i) for i in range(4))
        self.projectors = nn.ModuleList(
            nn.Conv2d(hidden_channels[i], features, 3, padding=1, bias=False) for i in range(4))
        self.fusion_blocks = nn.ModuleList(FusionBlock(features) for _ in range(4))
        self.head_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.head_conv2 = nn.Conv2d(features // 2, 32, 3, padding=1)
        self.head_out = nn.Conv2d(32, out_channels, 1)

    def forward(self, maps: Sequence[torch.Tensor], out_size: Tuple[int, int]) -> torch.Tensor:
        """maps: 4 maps [B, in_channels, h, w] (shallow to deep) -> [B, out_channels, *out_size]
        (logits)."""
        x = None
        for level in range(3, -1, -1):
            feat = self.projectors[level](self.resamplers[level](maps[level]))
            x = self.fusion_blocks[level](feat) if x is None else self.fusion_blocks[level](x, feat)
        x = F.interpolate(self.head_conv1(x), size=tuple(out_size), mode='bilinear',
                          align_corners=True)
        return self.head_out(F.relu(self.head_conv2(x)))
