"""Boundary detection: F-measure at the optimal dataset-wide threshold (odsF)."""
import math
from typing import Sequence

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import maximum_bipartite_matching
from scipy.spatial import cKDTree
from skimage.morphology import thin

from modzoo.registry import METRICS
from modzoo.structures import DENSE_FIELDS
from .base import TaskMetric, check_thresholds, pool, safe_div

IGNORE = DENSE_FIELDS['gt_edge']['ignore']


@METRICS.register_module()
class BoundaryMetric(TaskMetric):
    """odsF, in percent, of ``pred_edge`` [H, W] (edge probability) against ``gt_edge``
    [H, W] ({0, 1}, 255 ignored), by the BSDS / SEISM protocol that InvPT, TaskPrompter,
    TaskExpert and ATRC report (``maxDist`` 0.0075 on PASCAL-Context, 0.011 on NYUD-v2).

    At each threshold t (BSDS ``edgesEvalImg``, one ground truth per image):

    1. the prediction is binarised (probability >= t) and thinned to one-pixel-wide edges
       (morphological thinning, scikit-image's ``thin``, MATLAB's ``bwmorph(.., 'thin',
       inf)``); the gt edges are thinned once the same way (BSDS's are one pixel wide
       already; a thicker gt band counts as its centre line);
    2. predicted and gt edge pixels are matched one to one (a maximum bipartite matching,
       scipy's, as ``correspondPixels``) among the pairs at most r = ``max_dist`` x the image
       diagonal apart, so one gt pixel credits at most one predicted pixel;
    3. the matched and total counts are pooled over the set: P = matched / predicted,
       R = matched / gt, F = 2PR / (P + R) (0/0 = 0).

    odsF = max_t F (SEISM's ODS: the best single threshold for the whole set). Pixels whose gt
    is 255 (padding included) are neither predicted nor matched. The diagonal is that of
    ``img_shape`` when the maps are at ``pad_shape`` (the padded network input), else that of
    the maps. Not modelled: BSDS's matching also minimises the matched distances, which
    changes which pixels pair up but not how many.

    Args:
        task: the task measured.
        max_dist: the matching tolerance as a fraction of the image diagonal.
        thresholds: increasing probability thresholds in (0, 1); default 0.01, ..., 0.99
            (BSDS's 99).
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
        prob = np.where(gt != IGNORE, prob, 0.0)
        gt_points = np.argwhere(thin(gt == 1))
        radius = self.max_dist * _diagonal(sample, gt.shape)
        # thresholds with no probability between them binarise alike: evaluate each map once
        levels = np.searchsorted(np.unique(prob), self.thresholds)
        counts = {}
        for level, threshold in zip(levels, self.thresholds):
            if level not in counts:
                points = np.argwhere(thin(prob >= threshold))
                counts[level] = (len(points), match_edges(points, gt_points, radius))
        pred, matched = zip(*(counts[level] for level in levels))
        return dict(pred=np.array(pred), matched=np.array(matched), gt=np.int64(len(gt_points)))

    def summarize(self, stats: list) -> dict:
        total = pool(stats)
        precision = safe_div(total['matched'], total['pred'])
        recall = safe_div(total['matched'], total['gt'])
        f = safe_div(2 * precision * recall, precision + recall)
        return dict(odsF=float(100 * f.max()))


def match_edges(pred: np.ndarray, gt: np.ndarray, radius: float) -> int:
    """How many of the ``pred`` [P, 2] and ``gt`` [G, 2] edge pixels (row, col) pair up one
    to one at distances <= ``radius`` (a maximum bipartite matching)."""
    if not len(pred) or not len(gt):
        return 0
    if radius < 1:  # only a pixel itself is that close: the pixels both sets hold
        width = int(max(pred[:, 1].max(), gt[:, 1].max())) + 1
        return len(np.intersect1d(pred[:, 0] * width + pred[:, 1], gt[:, 0] * width + gt[:, 1]))
    pairs = cKDTree(pred).sparse_distance_matrix(cKDTree(gt), radius, output_type='ndarray')
    graph = sparse.csr_matrix((np.ones(len(pairs)), (pairs['i'], pairs['j'])),
                              shape=(len(pred), len(gt)))
    return int((maximum_bipartite_matching(graph, perm_type='column') >= 0).sum())


def _diagonal(sample: dict, shape: tuple) -> float:
    """The image diagonal in pixels, without the padding (see :class:`BoundaryMetric`)."""
    h, w = shape
    if 'img_shape' in sample and tuple(sample.get('pad_shape', ())) == (h, w):
        h, w = sample['img_shape'][:2]
    return math.hypot(h, w)
