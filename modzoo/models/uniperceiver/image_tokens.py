"""Image tokens of Uni-Perceiver v2: global tokens from the last feature map and one token
per region proposal."""
import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from einops import rearrange
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from timm.layers import AttentionPoolLatent, build_sincos2d_pos_embed
from torch import Tensor, nn

from modzoo.registry import MODELS
from modzoo.structures import Features


@MODELS.register_module()
class GlobalImageTokens(BaseModule):
    """``Concat(AttnPool_1..M'(F_L), Flatten(F_L))`` projected to the decoder width.

    F_L = ``feats.maps[-1]`` [B, C, h, w] gets a 2-D sin-cos position embedding; M' attention
    pools (timm ``AttentionPoolLatent``, one learned query each) summarise it, and every
    one of its h*w positions becomes a token too (``flatten=False`` keeps the pools only).

    Args:
        in_channels: C.  embed_dim: decoder width D.  num_pools: M'.
        num_heads: heads of the pools (must divide C).
    """

    def __init__(self, in_channels: int, embed_dim: int, num_pools: int = 1,
                 num_heads: int = 8, flatten: bool = True, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if in_channels % num_heads:
            raise ValueError(f'GlobalImageTokens: num_heads {num_heads} must divide '
                             f'in_channels {in_channels}')
        self.in_channels = in_channels
        self.pool = AttentionPoolLatent(in_channels, embed_dim, num_heads=num_heads,
                                        latent_len=num_pools, pool_type='')
        self.proj = nn.Linear(in_channels, embed_dim) if flatten else None

    def forward(self, feats: Features) -> Tensor:
        """-> [B, M' + h*w, D] (or [B, M', D] without ``flatten``)."""
        x = feats.maps[-1]
        if x.shape[1] != self.in_channels:
            raise ValueError(f'GlobalImageTokens: the last map has {x.shape[1]} channels, '
                             f'expected in_channels={self.in_channels}')
        h, w = x.shape[-2:]
        pos = build_sincos2d_pos_embed((h, w), self.in_channels, device=x.device)
        x = rearrange(x, 'b c h w -> b (h w) c') + pos.to(x.dtype)
        tokens = [self.pool(x)]
        if self.proj is not None:
            tokens.append(self.proj(x))
        return torch.cat(tokens, 1)


def box_encoding(boxes: Tensor, size: Tuple[int, int], num_freqs: int) -> Tensor:
    """Sine/cosine encoding of xyxy boxes [N, 4] in an image of ``size`` (h, w): each of the
    four coordinates, normalised to [0, 1], at frequencies pi * 2^0..2^(F-1) -> [N, 8F]."""
    h, w = size
    norm = boxes / boxes.new_tensor([w, h, w, h])
    freqs = math.pi * 2.0 ** torch.arange(num_freqs, device=boxes.device, dtype=boxes.dtype)
    angles = norm[..., None] * freqs                                          # [N, 4, F]
    return torch.cat([angles.sin(), angles.cos()], -1).flatten(1)


@MODELS.register_module()
class RegionTokens(BaseModule):
    """One token per proposal: ``q_sem + B(box) + M(mask)`` (Uni-Perceiver v2, Sec. 4.1).

    q_sem: the proposal's embedding through a linear layer; B: :func:`box_encoding` then a
    linear layer; M: the mask probabilities average-pooled to ``mask_size`` x ``mask_size``
    (28 in the paper), flattened, then a linear layer.

    Args:
        in_channels: width of ``proposal.embeddings``.  embed_dim: decoder width D.
        num_freqs: box encoding frequencies.  mask_size: pooled mask side.
    """

    def __init__(self, in_channels: int, embed_dim: int, num_freqs: int = 8,
                 mask_size: int = 28, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.num_freqs = num_freqs
        self.mask_size = mask_size
        self.sem = nn.Linear(in_channels, embed_dim)
        self.box = nn.Linear(8 * num_freqs, embed_dim)
        self.mask = nn.Linear(mask_size * mask_size, embed_dim)

    def forward(self, proposals: List[InstanceData],
                sizes: Sequence[Tuple[int, int]]) -> Tuple[Tensor, Tensor]:
        """Proposals of B images (``embeddings`` [N_i, C], ``bboxes`` [N_i, 4] in pixels of
        the image of size ``sizes[i]`` (h, w), ``mask_logits`` [N_i, m, m]) -> tokens
        [B, max N_i, D] (zeros where an image has fewer) and valid bool [B, max N_i]."""
        counts = [len(p) for p in proposals]
        tokens = []
        for p, size in zip(proposals, sizes):
            masks = F.adaptive_avg_pool2d(p.mask_logits.sigmoid()[:, None], self.mask_size)
            tokens.append(self.sem(p.embeddings) +
                          self.box(box_encoding(p.bboxes, size, self.num_freqs)) +
                          self.mask(masks.flatten(1)))
        out = nn.utils.rnn.pad_sequence(tokens, batch_first=True) if max(counts, default=0) \
            else self.sem.weight.new_zeros(len(proposals), 0, self.sem.out_features)
        valid = torch.arange(out.shape[1], device=out.device)[None] < \
            torch.tensor(counts, device=out.device)[:, None]
        return out, valid
