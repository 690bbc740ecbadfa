"""Chameleon / VTM token matching: query label tokens as attention-weighted sums of support
label tokens, the weights from image-token similarity.

Per level, a query image token attends over the tokens of ALL support images of its channel.
Chameleon first normalises every encoder level with one shared LayerNorm and, per matching
level, mixes the 4 encoder levels with softmax(alpha / 0.05), one alpha row per task group
(or per task with ``separate_alpha``); VTM (``level_mix=False``) matches level l on level l.
"""
import math
from typing import List, Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from modzoo.registry import MODELS


class MatchingAttention(nn.Module):
    """Multi-head cross attention without projection biases.

    Q and K share one pre-LayerNorm; the logits are divided by sqrt(dim_out) (the official
    temperature, not the head width) and clipped to +-1e4; the output goes through a
    LayerNorm and ``O + GELU(fc_o(O))``.

    forward(q [B, Lq, dim_in], k [B, Lk, dim_in], v [B, Lk, dim_out]) -> [B, Lq, dim_out].
    """

    def __init__(self, dim_in: int, dim_out: int, num_heads: int, attn_drop: float = 0.1):
        super().__init__()
        self.num_heads = num_heads
        self.temperature = math.sqrt(dim_out)
        self.pre_ln = nn.LayerNorm(dim_in)
        self.fc_q = nn.Linear(dim_in, dim_in, bias=False)
        self.fc_k = nn.Linear(dim_in, dim_in, bias=False)
        self.fc_v = nn.Linear(dim_out, dim_out, bias=False)
        self.fc_o = nn.Linear(dim_out, dim_out, bias=False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.ln = nn.LayerNorm(dim_out)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k = self.fc_q(self.pre_ln(q)), self.fc_k(self.pre_ln(k))
        q, k, v = (rearrange(t, 'b l (h c) -> b h l c', h=self.num_heads)
                   for t in (q, k, self.fc_v(v)))
        logits = (q @ k.transpose(-2, -1) / self.temperature).clamp(-1e4, 1e4)
        out = self.attn_drop(logits.softmax(dim=-1)) @ v
        out = self.ln(rearrange(out, 'b h l c -> b l (h c)'))
        return out + F.gelu(self.fc_o(out))


@MODELS.register_module()
class TokenMatching(nn.Module):
    """One ``MatchingAttention`` per level, with Chameleon's learned level mix.

    Args:
        image_dim: width of the image tokens (W).
        label_dim: width of the label tokens (Z).
        num_heads: attention heads.
        num_levels: encoder levels (4).
        n_alphas: rows of each level's alpha table (task groups, or tasks).
        alpha_temp: softmax temperature of the level mix (0.05).
        alpha_init: alpha starts at alpha_init * one_hot(level) (0: a uniform mix).
        level_mix: False for VTM: no shared LayerNorm, no alpha.
        attn_drop: attention dropout (0.1 meta-training, 0.5 fine-tuning).
    """

    def __init__(self, image_dim: int, label_dim: int, num_heads: int = 16,
                 num_levels: int = 4, n_alphas: int = 1, alpha_temp: float = 0.05,
                 alpha_init: float = 0., level_mix: bool = True, attn_drop: float = 0.1):
        super().__init__()
        self.matching = nn.ModuleList(
            MatchingAttention(image_dim, label_dim, num_heads, attn_drop)
            for _ in range(num_levels))
        self.level_mix = level_mix
        if level_mix:
            eye = torch.eye(num_levels)
            self.alpha = nn.ParameterList(
                nn.Parameter(alpha_init * eye[level].expand(n_alphas, -1).clone())
                for level in range(num_levels))
            self.alpha_temp = alpha_temp
            self.layernorm = nn.LayerNorm(image_dim)

    def mix_weights(self, level: int, a_idx: torch.Tensor) -> torch.Tensor:
        """a_idx [B, T] -> softmax(alpha[level][a_idx] / temp), [B, T, num_levels]."""
        return (self.alpha[level][a_idx] / self.alpha_temp).softmax(dim=-1)

    def forward(self, w_query: List[torch.Tensor], w_support: List[torch.Tensor],
                z_support: List[torch.Tensor],
                a_idx: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        """w_query: per level [B, T, M, n, Dw]; w_support: per level [B, T, N, n, Dw];
        z_support: per level [B, T, N, n, Dz]; a_idx [B, T] alpha row per channel.

        Returns per level the query label tokens [B, T, M, n, Dz].
        """
        B, T, M = w_query[0].shape[:3]
        if self.level_mix:
            if a_idx is None:
                raise ValueError('TokenMatching with level_mix needs a_idx [B, T] (the task '
                                 'group or task of each channel)')
            wq = torch.stack([self.layernorm(w) for w in w_query], -1)    # [..., Dw, L]
            ws = torch.stack([self.layernorm(w) for w in w_support], -1)
        out = []
        for level, attention in enumerate(self.matching):
            if self.level_mix:
                mix = self.mix_weights(level, a_idx)[:, :, None, None, None]  # [B,T,1,1,1,L]
                q, k = (wq * mix).sum(-1), (ws * mix).sum(-1)
            else:
                q, k = w_query[level], w_support[level]
            o = attention(rearrange(q, 'b t m n d -> (b t) (m n) d'),
                          rearrange(k, 'b t s n d -> (b t) (s n) d'),
                          rearrange(z_support[level], 'b t s n d -> (b t) (s n) d'))
            out.append(rearrange(o, '(b t) (m n) d -> b t m n d', b=B, m=M))
        return out
