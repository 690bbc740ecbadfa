"""Prefix prompts: learned keys and values put in front of an attention layer's own.

``PrefixPrompts`` holds the prompts of every task for one layer (the layout of the official
MULTI-LANE ``PreT_Attention.prompts``); ``prefix_attention`` runs a frozen timm ``Attention``
with them, calling its own qkv / q_norm / k_norm / norm / proj modules and weights.
"""
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class PrefixPrompts(nn.Module):
    """Per-task prefix prompts of one layer, trainable tensor ``kv`` [2, num_tasks, P, H, Dh].

    Index 0 of the first axis holds the keys, index 1 the values. Initialised with
    ``nn.init.orthogonal_`` as in the official code (2 orthonormal rows of length
    num_tasks*P*H*Dh).
    """

    def __init__(self, num_tasks, num_prompts, num_heads, head_dim):
        super().__init__()
        self.kv = nn.Parameter(nn.init.orthogonal_(
            torch.empty(2, num_tasks, num_prompts, num_heads, head_dim)))

    def forward(self, tasks, batch_size):
        """tasks: list of T task indices -> (keys, values), each [T*B, H, P, Dh], task-major."""
        kv = self.kv[:, tasks].unsqueeze(2).expand(-1, -1, batch_size, -1, -1, -1)
        return tuple(rearrange(kv, 'two t b p h d -> two (t b) h p d'))

    @torch.no_grad()
    def copy_task(self, src, dst):
        """Start task ``dst`` from the prompts of task ``src``."""
        self.kv[:, dst] = self.kv[:, src]


def prefix_attention(attn, x, prefix=None, num_queries=None):
    """Multi-head self-attention of a timm ``Attention`` with optional prefix keys/values.

    attn:        timm ``vision_transformer.Attention`` (its weights are used, not changed)
    x:           [M, L, D] input tokens (already LayerNorm-ed)
    prefix:      (keys, values), each [M, H, P, Dh], attended to before the tokens; or None
    num_queries: only the first Q tokens ask queries (default: all L); the rest only
                 answer as keys and values, which skips their query and output projections
    returns:     [M, Q, D]
    """
    num_queries = x.shape[1] if num_queries is None else num_queries
    width = attn.num_heads * attn.head_dim
    heads, split = attn.num_heads, [width, 2 * width]
    w_q, w_kv = attn.qkv.weight.split(split)
    b_q, b_kv = (None, None) if attn.qkv.bias is None else attn.qkv.bias.split(split)

    q = rearrange(F.linear(x[:, :num_queries], w_q, b_q), 'm q (h d) -> m h q d', h=heads)
    k, v = rearrange(F.linear(x, w_kv, b_kv), 'm l (two h d) -> two m h l d', two=2, h=heads)
    q, k = attn.q_norm(q), attn.k_norm(k)
    if prefix is not None:
        k = torch.cat((prefix[0], k), dim=2)
        v = torch.cat((prefix[1], v), dim=2)

    out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale,
                                         dropout_p=attn.attn_drop.p if attn.training else 0.)
    out = rearrange(out, 'm h q d -> m q (h d)')
    return attn.proj_drop(attn.proj(attn.norm(out)))
