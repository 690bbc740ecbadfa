"""Surface normals: angular error statistics, pooled over the pixels of the set."""
import math

import numpy as np
import torch

from modzoo.registry import METRICS
from .base import TaskMetric, pool

BIN_DEG = 0.1  # width of the angle histogram bins from which the median is read
WITHIN_DEG = (11.25, 22.5, 30.0)


@METRICS.register_module()
class NormalMetric(TaskMetric):
    """Angular error of ``pred_normal`` [3, H, W] against ``gt_normal`` [3, H, W].

    Valid pixels have a gt that is not the zero vector (padding included). Both vectors are
    L2-normalised and their angle is 2 atan2(|p - g|, |p + g|) in degrees (accurate also near
    0 and 180 degrees, where acos of the dot product loses precision). Pooled over all valid
    pixels of the set:

    - ``mean_angle``, ``rmse_angle`` (sqrt of the mean squared angle), ``median_angle``:
      the median is read from a histogram of 0.1-degree bins with linear interpolation inside
      the bin, so it is right to within 0.1 degree while a sample keeps 1800 counts, not its pixels.
    - ``within_11.25``, ``within_22.5``, ``within_30``: percent of pixels with angle < t.

    InvPT also rounds the prediction to 8 bits per component before measuring (a PNG round
    trip); that quantisation is not reproduced here.

    Args:
        task: the task measured.
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir`` of :class:`TaskMetric`.
    """

    def sample_stats(self, sample: dict) -> dict:
        pred, gt = self.pred_and_gt(sample, 'pred_normal', 'gt_normal')  # [3, H, W]
        if gt.dim() != 3 or gt.shape[0] != 3:
            raise ValueError(f"NormalMetric: normals of task '{self.task}' must be [3, H, W], "
                             f"got {tuple(gt.shape)} ({sample.get('img_path')})")
        valid = (gt != 0).any(0)
        p, g = _unit(pred[:, valid].double()), _unit(gt[:, valid].double())  # [3, N]
        angle = torch.rad2deg(2 * torch.atan2(_length(p - g), _length(p + g)))  # [N]
        n_bins = round(180 / BIN_DEG)
        bins = (angle / BIN_DEG).long().clamp(max=n_bins - 1)
        return dict(count=np.int64(angle.numel()),
                    sum=np.float64(angle.sum().item()),
                    sum_sq=np.float64((angle ** 2).sum().item()),
                    within=np.array([(angle < t).sum().item() for t in WITHIN_DEG]),
                    hist=torch.bincount(bins, minlength=n_bins).int().cpu().numpy())

    def summarize(self, stats: list) -> dict:
        total = pool(stats)
        n = total['count']
        if n == 0:
            raise ValueError(f"NormalMetric: every gt_normal of task '{self.task}' is the "
                             'zero vector (no normal); there is nothing to measure')
        metrics = dict(mean_angle=total['sum'] / n,
                       median_angle=histogram_median(total['hist'], BIN_DEG),
                       rmse_angle=math.sqrt(total['sum_sq'] / n))
        for t, count in zip(WITHIN_DEG, total['within']):
            metrics[f'within_{t:g}'] = 100 * count / n
        return {key: float(value) for key, value in metrics.items()}


def _length(v: torch.Tensor) -> torch.Tensor:
    """Euclidean length of the columns of ``v`` [3, N] (on CPU far faster than ``norm(dim=0)``)."""
    return v.pow(2).sum(0).sqrt()


def _unit(v: torch.Tensor) -> torch.Tensor:
    """The columns of ``v`` [3, N] scaled to unit length (a zero column stays zero)."""
    return v / _length(v).clamp_min(1e-12)


def histogram_median(hist: np.ndarray, bin_width: float) -> float:
    """The median of values counted in ``hist`` [K] (bin k covers [k w, (k + 1) w)), with
    linear interpolation inside the bin that holds it."""
    cum = np.cumsum(hist, dtype=np.int64)
    half = cum[-1] / 2
    k = int(np.searchsorted(cum, half))  # first bin whose cumulative count reaches half
    below = cum[k - 1] if k > 0 else 0
    return float(bin_width * (k + (half - below) / hist[k]))
