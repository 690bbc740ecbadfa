"""Monocular depth: RMSE and friends, pooled over the pixels of the set."""
from typing import Optional

import numpy as np
import torch

from modzoo.registry import METRICS
from .base import TaskMetric, pool


@METRICS.register_module()
class DepthMetric(TaskMetric):
    """Pixel-pooled depth errors of ``pred_depth`` [H, W] against ``gt_depth`` [H, W] (metres).

    Valid pixels have gt > 0 (0 marks no depth, padding included) and, when ``max_depth``
    is set, gt < ``max_depth`` (TaskPrompter evaluates NYUD-v2 with 0 < gt < 80). As in the
    InvPT/TaskPrompter meters, predictions <= 0 become 1e-9 and every error is pooled over
    all N valid pixels of the set (not averaged per image):

    - ``rmse`` = sqrt(sum (gt - pred)^2 / N)
    - ``log_rmse`` = sqrt(sum (ln gt - ln pred)^2 / N)
    - ``abs_rel`` = sum |gt - pred| / gt / N
    - ``sq_rel`` = sum (gt - pred)^2 / gt / N

    Args:
        task: the task measured.
        max_depth: exclusive upper bound of a valid gt depth in metres; None for no bound.
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir`` of :class:`TaskMetric`.
    """

    def __init__(self, task: str, max_depth: Optional[float] = None, **kwargs):
        super().__init__(task, **kwargs)
        if max_depth is not None and not max_depth > 0:
            raise ValueError(f'DepthMetric: `max_depth` must be positive or None, got '
                             f'{max_depth!r}')
        self.max_depth = max_depth

    def sample_stats(self, sample: dict) -> dict:
        pred, gt = self.pred_and_gt(sample, 'pred_depth', 'gt_depth')  # [H, W]
        valid = gt > 0
        if self.max_depth is not None:
            valid &= gt < self.max_depth
        gt = gt[valid].double()
        pred = pred[valid].double()
        pred = torch.where(pred > 0, pred, torch.full_like(pred, 1e-9))
        diff = gt - pred

        def total(values: torch.Tensor) -> np.float64:
            return np.float64(values.sum().item())

        return dict(count=np.int64(gt.numel()),
                    sq=total(diff ** 2),
                    log_sq=total((gt.log() - pred.log()) ** 2),
                    abs_rel=total(diff.abs() / gt),
                    sq_rel=total(diff ** 2 / gt))

    def summarize(self, stats: list) -> dict:
        total = pool(stats)
        n = total['count']
        if n == 0:
            raise ValueError(f"DepthMetric: no valid gt_depth pixel (gt > 0"
                             f"{'' if self.max_depth is None else f' and < {self.max_depth}'}) "
                             f"in the samples of task '{self.task}'")
        return dict(rmse=float(np.sqrt(total['sq'] / n)),
                    log_rmse=float(np.sqrt(total['log_sq'] / n)),
                    abs_rel=float(total['abs_rel'] / n),
                    sq_rel=float(total['sq_rel'] / n))
