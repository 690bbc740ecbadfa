"""MULTI-LANE patch selectors: learned queries that summarise the frozen tokens of each layer.

Each task owns S selector tokens. At a layer, every selector takes a softmax over its dot
products with the layer's LayerNorm-ed frozen tokens (scale 1/sqrt(D), one head, no
projections) and returns the weighted average of those tokens: S summary tokens per task
instead of the N patch tokens (``PreT_Attention.forward`` in ``tdemin16/multi-lane``).
"""
import torch
from torch import nn


def summarize(queries, tokens):
    """Summarise ``tokens`` once per selector query.

    queries: [T, S, D] selectors of T tasks (the same for every image)
    tokens:  [B, N, D] frozen tokens, already LayerNorm-ed; no gradient flows into them
    returns: summary [T, B, S, D] and attention weights [T, B, S, N] (each row sums to one)
    """
    tokens = tokens.detach()
    weights = torch.einsum('tsd,bnd->tbsn', queries, tokens) * queries.shape[-1] ** -0.5
    weights = weights.float().softmax(dim=-1)  # fp32 under autocast
    return torch.einsum('tbsn,bnd->tbsd', weights, tokens), weights


class PatchSelectors(nn.Module):
    """The selector tokens of every task, one trainable tensor ``tokens`` [num_tasks, S, D].

    Initialised as in the official code: ``nn.init.orthogonal_`` on the 3-D tensor, which
    flattens it to num_tasks orthonormal rows of length S*D, so entries start near 1/sqrt(S*D)
    and the first summaries are close to mean pooling.
    """

    def __init__(self, num_tasks, num_selectors, embed_dim):
        super().__init__()
        self.tokens = nn.Parameter(nn.init.orthogonal_(torch.empty(num_tasks, num_selectors,
                                                                   embed_dim)))

    def forward(self, tasks):
        """tasks: list of task indices (length T) -> selectors [T, S, D]."""
        return self.tokens[tasks]

    @torch.no_grad()
    def copy_task(self, src, dst):
        """Start task ``dst`` from the selectors of task ``src``."""
        self.tokens[dst] = self.tokens[src]
