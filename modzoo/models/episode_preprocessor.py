"""Batching and normalising Chameleon episodes."""
from typing import Sequence

import torch
from mmengine.model import BaseDataPreprocessor

from modzoo.registry import MODELS

IMAGE_KEYS = ('x_s', 'x_q')


@MODELS.register_module()
class EpisodePreprocessor(BaseDataPreprocessor):
    """Stack a list of episode dicts into one batch, move it to the model's device and
    normalise the images.

    Each episode holds tensors x_s [T, N, C, H, W], y_s [T, N, 1, H, W], x_q [T, M, C, H, W],
    t_idx [T], g_idx [T] and optionally y_q, mask [T, M, 1, H, W], loss_type [T]; images are
    float in [0, 1]. The batch has the same keys with a leading B (non-tensors stay lists).

    Args:
        mean, std: per-channel statistics in [0, 1] units (ImageNet's by default), repeated
            over images stacked on the channel axis.
    """

    def __init__(self, mean: Sequence[float] = (0.485, 0.456, 0.406),
                 std: Sequence[float] = (0.229, 0.224, 0.225)):
        super().__init__()
        self.register_buffer('mean', torch.tensor(mean).view(-1, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(std).view(-1, 1, 1), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., k*C, H, W] in [0, 1] -> normalised (the statistics repeat per image)."""
        reps = x.shape[-3] // self.mean.shape[0]
        return (x - self.mean.repeat(reps, 1, 1)) / self.std.repeat(reps, 1, 1)

    def forward(self, data, training: bool = False):
        """data: a list of episode dicts, or a dict of per-key lists (mmengine's
        ``pseudo_collate``) -> dict(inputs=batch, data_samples=None)."""
        if isinstance(data, dict):
            columns = {k: v if isinstance(v, (list, tuple)) else [v] for k, v in data.items()}
        else:
            columns = {k: [e[k] for e in data] for k in data[0]}
        batch = {k: torch.stack(v).to(self.device) if isinstance(v[0], torch.Tensor) else v
                 for k, v in columns.items()}
        for key in IMAGE_KEYS:
            batch[key] = self.normalize(batch[key].float())
        return dict(inputs=batch, data_samples=None)
