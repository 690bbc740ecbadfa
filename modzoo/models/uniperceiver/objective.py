"""Uni-Perceiver's one objective: softmax over a candidate set of cosine similarities / tau."""
import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


class LogitScale(nn.Module):
    """A learnable 1/tau, kept as its log, capped (Uni-Perceiver v1: init tau 0.07, 1/tau <=
    100, one per task family)."""

    def __init__(self, init_temperature: float = 0.07, max_scale: float = 100.0):
        super().__init__()
        if not (0 < init_temperature and 1 / init_temperature <= max_scale):
            raise ValueError(f'LogitScale: need 0 < 1/init_temperature <= max_scale, got '
                             f'{init_temperature}, {max_scale}')
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / init_temperature)))
        self.max_log = math.log(max_scale)

    def forward(self) -> Tensor:
        return self.log_scale.clamp(max=self.max_log).exp()


def cosine_logits(features: Tensor, candidates: Tensor, scale: Tensor) -> Tensor:
    """``scale * cos`` of features [..., D] against candidates [K, D] -> [..., K]."""
    return scale * F.normalize(features, dim=-1) @ F.normalize(candidates, dim=-1).t()


def gather_with_grad(x: Tensor) -> Tensor:
    """``x`` [B, D] of every rank concatenated in rank order [W * B, D]; gradients flow back
    to each rank's own slice (``torch.distributed.nn.all_gather``). One process: ``x``."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn import all_gather
    return torch.cat(all_gather(x), 0)


def contrastive_loss(images: Tensor, texts: Tensor, scale: Tensor, gather: bool = True):
    """Symmetric InfoNCE of matching image/text pairs, the other pairs being the negatives.

    images, texts: [B, D] of this rank (row i of each is a pair; B equal on all ranks, as a
    drop-last sampler gives). With ``gather`` the candidates are every rank's pairs (features
    gathered with gradients), so each rank's loss is its rows' share of the loss over the
    whole global batch: averaged over ranks (as DDP averages gradients) it equals the
    one-process loss on the concatenated batch.
    Returns the mean of the image-to-text and text-to-image cross-entropies.
    """
    all_images = gather_with_grad(images) if gather else images
    all_texts = gather_with_grad(texts) if gather else texts
    offset = 0
    if gather and all_images.shape[0] != images.shape[0]:
        offset = dist.get_rank() * images.shape[0]
    target = torch.arange(images.shape[0], device=images.device) + offset
    i2t = F.cross_entropy(cosine_logits(images, all_texts, scale), target)
    t2i = F.cross_entropy(cosine_logits(texts, all_images, scale), target)
    return (i2t + t2i) / 2
