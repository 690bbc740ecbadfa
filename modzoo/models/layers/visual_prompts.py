"""Visual prompt tokens: VPT-deep (Jia et al., "Visual Prompt Tuning", ECCV 2022; official code
``KMnP/vpt``, ``src/models/vit_prompt/vit.py``).

Every block gets P learned tokens of its own, put after the prefix (class) tokens of its input;
the block's outputs at those positions are dropped, and the next block gets its own prompts in
their place (the official ``forward_deep_prompt``). Prompts take no position embedding.
"""
import math

import torch
from torch import nn


class VisualPrompts(nn.Module):
    """The prompts of L blocks, trainable ``tokens`` [L, P, D].

    Initialised uniform in ±sqrt(6 / (C p² + D)) as the official code (Xavier uniform with the
    patch embedding's fan-in C p²), with dropout on the prompts (official default 0).
    """

    def __init__(self, num_layers: int, num_prompts: int, embed_dim: int, patch_size: int,
                 in_channels: int = 3, dropout: float = 0.):
        super().__init__()
        bound = math.sqrt(6. / (in_channels * patch_size ** 2 + embed_dim))
        self.tokens = nn.Parameter(
            torch.empty(num_layers, num_prompts, embed_dim).uniform_(-bound, bound))
        self.dropout = nn.Dropout(dropout)

    @property
    def num_layers(self) -> int:
        return self.tokens.shape[0]

    @property
    def num_prompts(self) -> int:
        return self.tokens.shape[1]

    def insert(self, x: torch.Tensor, layer: int, num_prefix_tokens: int) -> torch.Tensor:
        """x [B, T + N, D] (T prefix tokens) -> [B, T + P + N, D] with layer ``layer``'s prompts."""
        prompts = self.dropout(self.tokens[layer]).expand(x.shape[0], -1, -1)
        return torch.cat((x[:, :num_prefix_tokens], prompts, x[:, num_prefix_tokens:]), dim=1)

    def remove(self, x: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
        """x [B, T + P + N, D] -> [B, T + N, D] without the prompt positions."""
        return torch.cat((x[:, :num_prefix_tokens], x[:, num_prefix_tokens + self.num_prompts:]),
                         dim=1)
