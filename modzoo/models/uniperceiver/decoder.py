"""Uni-Perceiver's shared task-agnostic decoder: BERT-like layers with a <SPE> token and
conditional MoE FFNs routed on token attributes."""
from typing import Optional, Sequence

import torch
from mmengine.model import BaseModule
from timm.layers import Mlp
from torch import Tensor, nn

from modzoo.models.layers import MoEMlp, sum_aux_losses
from modzoo.registry import MODELS

TOKEN_TYPES = ('spe', 'global', 'region', 'text')
TASK_FAMILIES = ('classification', 'detection', 'captioning', 'retrieval')
ROLES = ('input', 'target')


def prefix_causal_mask(length: int, prefix: int, device=None) -> Tensor:
    """bool [L, L], True where a query may NOT attend: the first ``prefix`` positions (<SPE>
    and image tokens) are visible to all and see only each other; the rest (text) is causal.
    Uni-Perceiver's caption mask."""
    pos = torch.arange(length, device=device)
    later = pos[None, :] > pos[:, None]
    return (pos[None, :] >= prefix) & ((pos[:, None] < prefix) | later)


class DecoderLayer(nn.Module):
    """Transformer layer, pre-norm as Uni-Perceiver v1's code (``norm_first=True`` in its
    ``UnifiedBertEncoder``): x = x + attn(LN(x)); x = x + FFN(LN(x)). ``norm_first=False``
    gives BERT's post-norm: x = LN(x + attn(x)); x = LN(x + FFN(x)).

    The FFN is an MLP, or with ``moe`` an :class:`MoEMlp` whose router sees each token's
    attribute embedding (attribute-level conditional MoE)."""

    def __init__(self, embed_dim: int, num_heads: int, mlp_ratio: float, drop: float,
                 moe: Optional[dict], attr_dims: int, norm_first: bool = True):
        super().__init__()
        self.norm_first = norm_first
        self.attn = nn.MultiheadAttention(embed_dim, num_heads, dropout=drop, batch_first=True)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.drop = nn.Dropout(drop)
        hidden = int(embed_dim * mlp_ratio)
        self.moe = moe is not None
        self.ffn = (MoEMlp(embed_dim, **{**dict(hidden_dims=hidden), **moe},
                           router_dims=attr_dims, drop=drop) if self.moe
                    else Mlp(embed_dim, hidden, drop=drop))

    def forward(self, x: Tensor, attn_mask: Optional[Tensor], padding: Tensor,
                attributes: Optional[Tensor]):
        """x [B, L, D]; attn_mask bool [L, L] (True = blocked); padding bool [B, L] (True =
        padded key); attributes [B, L, A] -> (x [B, L, D], aux losses)."""
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.drop(self.attn(h, h, h, attn_mask=attn_mask, key_padding_mask=padding,
                                        need_weights=False)[0])
            y, aux = self._ffn(self.norm2(x), attributes)
            return x + self.drop(y), aux
        a = self.attn(x, x, x, attn_mask=attn_mask, key_padding_mask=padding,
                      need_weights=False)[0]
        x = self.norm1(x + self.drop(a))
        y, aux = self._ffn(x, attributes)
        return self.norm2(x + self.drop(y)), aux

    def _ffn(self, x, attributes):
        if self.moe:
            return self.ffn(x, router_input=attributes)
        return self.ffn(x), {}


@MODELS.register_module()
class UnifiedDecoder(BaseModule):
    """The shared decoder g: ``[<SPE>, tokens]`` -> features of every position.

    Inputs are image tokens, text tokens or both (image first). A learned <SPE> token is
    put in front; every token gets the embedding of its type (``TOKEN_TYPES``) as BERT's
    token types, then a LayerNorm. With ``moe`` every FFN is a conditional MoE whose router
    reads the token's attributes: its type, the task family and whether the sequence is an
    input or a target (candidate), summed from three embedding tables (Uni-Perceiver-MoE's
    attribute routing: tokens with the same attributes take the same experts).

    Args:
        embed_dim, depth, num_heads, mlp_ratio, drop: BERT-base shape by default but 6
            layers, as Uni-Perceiver v2.
        moe: None for dense FFNs, else :class:`MoEMlp` arguments (``num_experts``,
            ``top_k``, ``balance_weight`` ...), used in every layer.
        attr_dims: width of the attribute embedding the routers read.
        norm_first: pre-norm layers (v1's code; the model's output projection starts with
            the final LayerNorm), or BERT's post-norm with False.
    """

    def __init__(self, embed_dim: int = 768, depth: int = 6, num_heads: int = 12,
                 mlp_ratio: float = 4.0, drop: float = 0.1, moe: Optional[dict] = None,
                 attr_dims: int = 64, norm_first: bool = True, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.embed_dim = embed_dim
        self.spe = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.type_embed = nn.Embedding(len(TOKEN_TYPES), embed_dim)
        self.norm_in = nn.LayerNorm(embed_dim)
        self.layers = nn.ModuleList(
            DecoderLayer(embed_dim, num_heads, mlp_ratio, drop, moe, attr_dims, norm_first)
            for _ in range(depth))
        self.moe = moe is not None
        if self.moe:   # attribute embeddings: token type, task family, input or target
            self.attr_type = nn.Embedding(len(TOKEN_TYPES), attr_dims)
            self.attr_family = nn.Embedding(len(TASK_FAMILIES), attr_dims)
            self.attr_role = nn.Embedding(len(ROLES), attr_dims)
        nn.init.trunc_normal_(self.spe, std=0.02)
        nn.init.trunc_normal_(self.type_embed.weight, std=0.02)

    def forward(self, tokens: Tensor, types: Sequence[str], valid: Tensor, family: str,
                role: str = 'input', causal_from: Optional[int] = None):
        """Decode ``tokens`` [B, N, D].

        types: the type name of each of the N tokens; valid: bool [B, N] (False = padding);
        family: one of ``TASK_FAMILIES``; role: 'input' or 'target'; causal_from: index of
        the first text token when text must be causal (captioning), None for full attention.
        Returns (features [B, 1 + N, D], position 0 the <SPE> token; MoE aux losses).
        """
        if family not in TASK_FAMILIES or role not in ROLES:
            raise KeyError(f'UnifiedDecoder: family must be one of {TASK_FAMILIES} and role one '
                           f'of {ROLES}, got {family!r}, {role!r}')
        batch = tokens.shape[0]
        type_ids = torch.tensor([0] + [TOKEN_TYPES.index(t) for t in types],
                                device=tokens.device)
        x = torch.cat([self.spe.expand(batch, -1, -1), tokens], 1) + self.type_embed(type_ids)
        x = self.norm_in(x)
        padding = torch.cat([valid.new_ones(batch, 1), valid.bool()], 1).logical_not()
        attn_mask = None if causal_from is None else \
            prefix_causal_mask(x.shape[1], 1 + causal_from, x.device)
        attributes = None
        if self.moe:
            attributes = (self.attr_type(type_ids) +
                          self.attr_family.weight[TASK_FAMILIES.index(family)] +
                          self.attr_role.weight[ROLES.index(role)])
            attributes = attributes.expand(batch, -1, -1)
        aux = []
        for layer in self.layers:
            x, layer_aux = layer(x, attn_mask, padding, attributes)
            aux.append(layer_aux)
        return x, sum_aux_losses(aux)
