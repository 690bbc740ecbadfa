"""Boundary detection: F-measure at the optimal dataset-wide threshold (odsF)."""
import math
from typing import Sequence

import numpy as np
import torch
from scipy import ndimage

from modzoo.registry import METRICS
from modzoo.structures import DENSE_FIELDS
from .base import TaskMetric, check_thresholds, count_at_least, pool, safe_div

IGNORE = DENSE_FIELDS['gt_edge']['ignore']


@METRICS.register_module()
class BoundaryMetric(TaskMetric):
    """odsF, in percent, of ``pred_edge`` [H, W] (edge probability) against ``gt_edge``
    [H, W] ({0, 1}, 255 ignored).

    At each threshold t an edge is predicted where the probability is >= t. With the
    tolerance r = ``max_dist`` x the image diagonal (in pixels):

    - a predicted edge pixel is matched when a gt edge pixel lies within distance r of it;
    - a gt edge pixel is matched when a predicted edge pixel lies within distance r of it.

    Matched and total counts of both kinds are pooled over the set per threshold;
    P = matched predicted / predicted, R = matched gt / gt, F = 2PR / (P + R) (0/0 = 0), and
    odsF = max_t F. Pixels whose gt is 255 (padding included) are neither counted nor
    matched. The diagonal is that of ``img_shape`` when the maps are at ``pad_shape`` (the
    padded network input), else that of the maps.

    This is a pure numpy/scipy stand-in for the SEISM MATLAB protocol that InvPT,
    TaskPrompter and ATRC report (``maxDist`` 0.0075 on PASCAL-Context, 0.011 on NYUD-v2).
    SEISM thins the thresholded prediction to one-pixel-wide edges (non-maximum suppression)
    and matches pixels one to one (bipartite matching, ``correspondPixels``), at 101 HED
    thresholds. Here the prediction is not thinned and one gt pixel may match many
    predicted pixels (and vice versa), so this odsF is more lenient, mostly in precision
    for thick edges: use it to compare models within modzoo, not against published odsF.

    Args:
        task: the task measured.
        max_dist: the matching tolerance as a fraction of the image diagonal.
        thresholds: increasing probability thresholds in (0, 1); default 0.01, ..., 0.99.
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir`` of :class:`TaskMetric`.
    """

    def __init__(self,
                 task: str,
                 max_dist: float = 0.0075,
                 thresholds: Sequence[float] = tuple(i / 100 for i in range(1, 100)),
                 **kwargs):
        super().__init__(task, **kwargs)
        if not max_dist >= 0:
            raise ValueError(f'BoundaryMetric: `max_dist` must be >= 0, got {max_dist!r}')
        self.max_dist = max_dist
        self.thresholds = check_thresholds('BoundaryMetric', thresholds)

    def sample_stats(self, sample: dict) -> dict:
        prob, gt = self.pred_and_gt(sample, 'pred_edge', 'gt_edge')  # [H, W]
        prob, gt = prob.float().cpu().numpy(), gt.cpu().numpy()
        if not np.isin(gt, (0, 1, IGNORE)).all():
            raise ValueError(f"BoundaryMetric: gt_edge of task '{self.task}' "
                             f"({sample.get('img_path')}) must hold 0, 1 or {IGNORE}, got "
                             f'{np.unique(gt).tolist()}')
        valid = gt != IGNORE
        gt_edge = gt == 1
        disk = _disk(self.max_dist * _diagonal(sample, gt.shape))
        near_gt = ndimage.binary_dilation(gt_edge, structure=disk)
        # the highest valid probability within r of each pixel
        near_prob = ndimage.maximum_filter(np.where(valid, prob, -np.inf), footprint=disk,
                                           mode='constant', cval=-np.inf)

        def count(values: np.ndarray) -> np.ndarray:
            return count_at_least(torch.from_numpy(values), self.thresholds)

        return dict(pred=count(prob[valid]),
                    pred_matched=count(prob[valid & near_gt]),
                    gt=np.int64(gt_edge.sum()),
                    gt_matched=count(near_prob[gt_edge]))

    def summarize(self, stats: list) -> dict:
        total = pool(stats)
        precision = safe_div(total['pred_matched'], total['pred'])
        recall = safe_div(total['gt_matched'], total['gt'])
        f = safe_div(2 * precision * recall, precision + recall)
        return dict(odsF=float(100 * f.max()))


def _diagonal(sample: dict, shape: tuple) -> float:
    """The image diagonal in pixels, without the padding (see :class:`BoundaryMetric`)."""
    h, w = shape
    if 'img_shape' in sample and tuple(sample.get('pad_shape', ())) == (h, w):
        h, w = sample['img_shape'][:2]
    return math.hypot(h, w)


def _disk(radius: float) -> np.ndarray:
    """Boolean footprint [2R+1, 2R+1], R = floor(radius): offsets within ``radius``."""
    r = math.floor(radius)
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    return dy ** 2 + dx ** 2 <= radius ** 2
