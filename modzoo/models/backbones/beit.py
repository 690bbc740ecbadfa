"""BEiT(-v2) backbone with task-specific bias sets: Chameleon's image encoder.

A BEiT block (relative position bias per block, layer scale ``gamma_1``/``gamma_2``, q/v
biases without a k bias) whose biases (q/v, attention proj, norm1/norm2, fc1/fc2) are tables
``[n_bias_sets, dim]``; each sample uses the row of its task index. Several images per sample
(``n_input_images`` = k, input channels k * in_channels) are embedded separately, attend to each
other through a 3-D relative position window (k, h, w), and only the first image's tokens come
out. Parameter names are timm's ``Beit`` names, so timm BEiT / BEiT-v2 weights load (a 1-D
bias fills every bias set; relative position tables are resampled to the model's grid).
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from einops import rearrange
from mmengine.model import BaseModule
from timm.layers import DropPath, resize_rel_pos_bias_table, trunc_normal_
from torch import nn

from modzoo.registry import MODELS
from modzoo.structures import Features
from modzoo.weights import load_weights
from ..layers.bias_sets import BiasSetLayerNorm, BiasSetLinear, _load_shared_into_sets

# embed_dim / depth / num_heads of timm's beitv2_{base,large}_patch16_224.
ARCHS = {
    'base': dict(embed_dim=768, depth=12, num_heads=12),
    'large': dict(embed_dim=1024, depth=24, num_heads=16),
}
NUM_EXTRA_POSITIONS = 3  # cls->token, token->cls, cls->cls


def relative_position_index(window: Tuple[int, int, int]) -> torch.Tensor:
    """Index [1 + d*h*w, 1 + d*h*w] into a table of (2d-1)(2h-1)(2w-1) + 3 entries for a
    window of d images of h x w patches (token 0 is the class token)."""
    coords = torch.stack(torch.meshgrid(*[torch.arange(n) for n in window], indexing='ij'))
    coords = coords.flatten(1)                                      # [3, d*h*w]
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # [L, L, 3]
    spans = [2 * n - 1 for n in window]
    rel = rel + torch.tensor([n - 1 for n in window])
    index = rel[..., 0] * spans[1] * spans[2] + rel[..., 1] * spans[2] + rel[..., 2]
    num_spatial = spans[0] * spans[1] * spans[2]
    out = torch.zeros(index.shape[0] + 1, index.shape[1] + 1, dtype=torch.long)
    out[1:, 1:] = index
    out[0, :] = num_spatial
    out[:, 0] = num_spatial + 1
    out[0, 0] = num_spatial + 2
    return out


def table_size(window: Tuple[int, int, int]) -> int:
    d, h, w = window
    return (2 * d - 1) * (2 * h - 1) * (2 * w - 1) + NUM_EXTRA_POSITIONS


def resize_relative_position_table(table: torch.Tensor, src: Tuple[int, int, int],
                                   dst: Tuple[int, int, int]) -> torch.Tensor:
    """Table [table_size(src), heads] -> [table_size(dst), heads].

    The (h, w) plane of each depth offset is resampled with BEiT's geometric interpolation
    (timm ``resize_rel_pos_bias_table``); going from 1 to d images, the single-image plane
    becomes the same-image offset (0) and the cross-image offsets start at zero, as the
    official ``resize_rel_pos_bias``. The class-token entries are kept.
    """
    heads = table.shape[1]
    extra, spatial = table[-NUM_EXTRA_POSITIONS:], table[:-NUM_EXTRA_POSITIONS]
    planes = spatial.reshape(2 * src[0] - 1, -1, heads)
    plane_dst = (2 * dst[1] - 1) * (2 * dst[2] - 1)
    planes = torch.stack([
        resize_rel_pos_bias_table(p, dst[1:], (plane_dst, heads), old_window_size=src[1:])
        for p in planes])
    if src[0] != dst[0]:
        if src[0] != 1:
            raise ValueError(f'relative position table: can resample from 1 image to '
                             f'{dst[0]}, not from {src[0]}')
        out = planes.new_zeros(2 * dst[0] - 1, plane_dst, heads)
        out[dst[0] - 1] = planes[0]
        planes = out
    return torch.cat([planes.reshape(-1, heads), extra])


class Attention(nn.Module):
    """BEiT attention with bias sets and a relative position bias.

    forward(x [B, L, D], idx [B] or None) -> [B, L, D], L = 1 + d*h*w.
    """
    bias_set_names = ('q_bias', 'v_bias')

    def __init__(self, dim: int, num_heads: int, window: Tuple[int, int, int],
                 qkv_bias: bool = True, n_sets: int = 0):
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        shape = (n_sets, dim) if n_sets > 0 else (dim,)
        self.q_bias = nn.Parameter(torch.zeros(shape)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(shape)) if qkv_bias else None
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros(table_size(window), num_heads))
        self.register_buffer('relative_position_index', relative_position_index(window),
                             persistent=False)
        self.proj = BiasSetLinear(dim, dim, n_sets=n_sets)

    def forward(self, x: torch.Tensor, idx: Optional[torch.Tensor] = None) -> torch.Tensor:
        qkv = F.linear(x, self.qkv.weight)
        if self.q_bias is not None:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias], -1)
            qkv = qkv + (bias if bias.ndim == 1 else bias[idx][:, None])
        q, k, v = rearrange(qkv, 'b l (three h c) -> three b h l c', three=3, h=self.num_heads)
        L = x.shape[1]
        rel = self.relative_position_bias_table[self.relative_position_index[:L, :L]]
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=rel.permute(2, 0, 1)[None])
        return self.proj(rearrange(x, 'b h l c -> b l (h c)'), idx)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        _load_shared_into_sets(self, state_dict, prefix, ['q_bias', 'v_bias'])
        state_dict.pop(prefix + 'relative_position_index', None)   # rebuilt from the window
        key = prefix + 'relative_position_bias_table'
        table = state_dict.get(key)
        if table is not None and table.shape != self.relative_position_bias_table.shape:
            state_dict[key] = resize_relative_position_table(
                table, _source_window(table.shape[0], self.window), self.window)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _source_window(size: int, window: Tuple[int, int, int]) -> Tuple[int, int, int]:
    """The (d, h, w) window a stored table of ``size`` rows was made for (square planes,
    one image or as many as ``window``)."""
    for d in (1, window[0]):
        plane = (size - NUM_EXTRA_POSITIONS) // (2 * d - 1)
        span = round(plane ** 0.5)
        if span * span * (2 * d - 1) + NUM_EXTRA_POSITIONS == size and span % 2 == 1:
            return (d, (span + 1) // 2, (span + 1) // 2)
    raise ValueError(f'relative_position_bias_table with {size} rows fits no square window '
                     f'of 1 or {window[0]} images')


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2, both with bias sets. forward(x [B, L, D], idx) -> [B, L, D]."""

    def __init__(self, dim: int, hidden: int, n_sets: int = 0):
        super().__init__()
        self.fc1 = BiasSetLinear(dim, hidden, n_sets=n_sets)
        self.act = nn.GELU()
        self.fc2 = BiasSetLinear(hidden, dim, n_sets=n_sets)

    def forward(self, x: torch.Tensor, idx: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x, idx)), idx)


class Block(nn.Module):
    """Pre-norm BEiT block with layer scale. forward(x [B, L, D], idx) -> [B, L, D]."""

    def __init__(self, dim: int, num_heads: int, window: Tuple[int, int, int],
                 mlp_ratio: float = 4., qkv_bias: bool = True, init_values: float = 1e-5,
                 drop_path: float = 0., n_sets: int = 0):
        super().__init__()
        self.norm1 = BiasSetLayerNorm(dim, n_sets=n_sets)
        self.attn = Attention(dim, num_heads, window, qkv_bias=qkv_bias, n_sets=n_sets)
        self.norm2 = BiasSetLayerNorm(dim, n_sets=n_sets)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), n_sets=n_sets)
        self.gamma_1 = nn.Parameter(init_values * torch.ones(dim))
        self.gamma_2 = nn.Parameter(init_values * torch.ones(dim))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, idx: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x + self.drop_path(self.gamma_1 * self.attn(self.norm1(x, idx), idx))
        return x + self.drop_path(self.gamma_2 * self.mlp(self.norm2(x, idx), idx))


@MODELS.register_module()
class BiasSetBEiT(BaseModule):
    """BEiT-v2 image encoder with task bias sets and several input images per sample.

    Args:
        arch: 'base' | 'large' or dict(embed_dim, depth, num_heads[, mlp_ratio]).
        img_size: (H, W) of one image; the relative position window is (k, H/p, W/p).
        patch_size: p.
        in_channels: channels of ONE image.
        n_bias_sets: rows of every bias table (0: plain shared biases).
        n_input_images: k images per sample, stacked on the channel axis.
        out_indices: blocks whose outputs are returned, shallow to deep.
        init_values: layer-scale init (BEiT-v2: 1e-5).
        drop_path_rate: stochastic depth of the last block (linear rule).
        pretrained: a timm BEiT/BEiT-v2 state dict (path, URL or hub name).
    """

    def __init__(self,
                 arch: Union[str, dict] = 'large',
                 img_size: Union[int, Sequence[int]] = 224,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 n_bias_sets: int = 0,
                 n_input_images: int = 1,
                 out_indices: Sequence[int] = (5, 11, 17, 23),
                 init_values: float = 1e-5,
                 qkv_bias: bool = True,
                 drop_path_rate: float = 0.,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        arch = dict(ARCHS[arch]) if isinstance(arch, str) else dict(arch)
        dim, depth = arch['embed_dim'], arch['depth']
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        if img_size[0] % patch_size or img_size[1] % patch_size:
            raise ValueError(f'BiasSetBEiT img_size {img_size} must be a multiple of '
                             f'patch_size {patch_size}')
        bad = [i for i in out_indices if not 0 <= i < depth]
        if bad:
            raise ValueError(f'BiasSetBEiT out_indices {list(out_indices)}: {bad} are not '
                             f'blocks of a depth-{depth} model')
        self.embed_dim, self.patch_size, self.in_channels = dim, patch_size, in_channels
        self.img_size, self.n_bias_sets = img_size, n_bias_sets
        self.n_input_images = n_input_images
        self.grid_size = (img_size[0] // patch_size, img_size[1] // patch_size)
        self.out_indices = tuple(sorted(out_indices))
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(in_channels, dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        window = (n_input_images, *self.grid_size)
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block(dim, arch['num_heads'], window, arch.get('mlp_ratio', 4.), qkv_bias,
                  init_values, rates[i], n_bias_sets) for i in range(depth))
        self.pretrained = pretrained
        self._random_init()

    def _random_init(self):
        """BEiT's init: truncated normal (std .02) weights, zero biases, the residual
        projections scaled by 1/sqrt(2 * layer)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        trunc_normal_(self.cls_token, std=.02)
        for i, block in enumerate(self.blocks):
            block.attn.proj.weight.data.div_((2. * (i + 1)) ** 0.5)
            block.mlp.fc2.weight.data.div_((2. * (i + 1)) ** 0.5)

    def init_weights(self):
        if self.pretrained is None:
            return
        load_weights(self, self.pretrained, allow_unexpected=True, convert=lambda state: {
            k: v for k, v in state.items() if not k.startswith(('head.', 'fc_norm.', 'norm.'))})
        self._is_init = True

    def forward(self, x: torch.Tensor, task: Optional[torch.Tensor] = None) -> Features:
        """x [B, k * C, H, W] (k images of C channels), task [B] bias-set index per sample.

        Returns Features(maps=tuple of [B, D, H/p, W/p] of the first image, one per out index).
        """
        B, C, H, W = x.shape
        k = self.n_input_images
        if C != k * self.in_channels or (H, W) != self.img_size:
            raise ValueError(f'BiasSetBEiT expects [B, {k * self.in_channels}, '
                             f'{self.img_size[0]}, {self.img_size[1]}] inputs '
                             f'({k} image(s) of {self.in_channels} channels), got '
                             f'{list(x.shape)}')
        x = self.patch_embed.proj(rearrange(x, 'b (k c) h w -> (b k) c h w', k=k))
        h, w = x.shape[-2:]
        x = rearrange(x, '(b k) d h w -> b (k h w) d', k=k)
        x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)
        maps = []
        for i, block in enumerate(self.blocks[:self.out_indices[-1] + 1]):
            x = block(x, task)
            if i in self.out_indices:
                maps.append(rearrange(x[:, 1:1 + h * w], 'b (h w) d -> b d h w', h=h))
        return Features(maps=tuple(maps))
