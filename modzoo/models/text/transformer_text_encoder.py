"""A small Transformer text encoder (token + position embeddings, pre-norm blocks)."""
from typing import Optional

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from modzoo.registry import MODELS


def causal_mask(length: int, device=None) -> Tensor:
    """bool [L, L], True where a query may NOT attend (keys after it)."""
    return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)


@MODELS.register_module()
class TransformerTextEncoder(BaseModule):
    """Token ids -> contextual token features, bidirectional or causal.

    Args:
        vocab_size: size of the tokenizer's vocabulary (the model fills it in from its
            tokenizer when left None).
        embed_dim: width C.
        depth, num_heads, mlp_ratio, drop: pre-norm Transformer blocks.
        max_length: number of learned positions.
    """

    def __init__(self, vocab_size: Optional[int] = None, embed_dim: int = 256, depth: int = 2,
                 num_heads: int = 4, mlp_ratio: float = 4.0, max_length: int = 64,
                 drop: float = 0.0, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if vocab_size is None:
            raise ValueError('TransformerTextEncoder needs vocab_size (the tokenizer\'s)')
        self.embed_dim = embed_dim
        self.max_length = max_length
        self.token_embed = nn.Embedding(vocab_size, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, max_length, embed_dim))
        layer = nn.TransformerEncoderLayer(embed_dim, num_heads, int(embed_dim * mlp_ratio),
                                           drop, activation='gelu', batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dim)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.token_embed.weight, std=0.02)

    def encode(self, token_ids: Tensor, mask: Tensor, causal: bool = False) -> Tensor:
        """``token_ids`` long [B, L], ``mask`` bool [B, L] (True = real token) -> [B, L, C].

        ``causal``: position i sees positions <= i only (captioning's teacher forcing)."""
        length = token_ids.shape[1]
        if length > self.max_length:
            raise ValueError(f'TransformerTextEncoder: {length} tokens, more than max_length '
                             f'{self.max_length}')
        x = self.token_embed(token_ids) + self.pos_embed[:, :length]
        attn_mask = causal_mask(length, x.device) if causal else None
        x = self.blocks(x, mask=attn_mask, src_key_padding_mask=~mask.bool())
        return self.norm(x)
