"""Salient object detection: maxF (beta^2 = 0.3) and mIoU, pooled over the pixels of the set."""
from typing import Sequence

import numpy as np
import torch

from modzoo.registry import METRICS
from modzoo.structures import DENSE_FIELDS
from .base import TaskMetric, check_thresholds, count_at_least, pool, safe_div

IGNORE = DENSE_FIELDS['gt_saliency']['ignore']
BETA_SQ = 0.3
IOU_THR = 0.5


@METRICS.register_module()
class SaliencyMetric(TaskMetric):
    """maxF and mIoU, in percent, of ``pred_saliency`` [H, W] (foreground probability)
    against ``gt_saliency`` [H, W] ({0, 1}, 255 ignored: padding never counts).

    - ``maxF``: at each threshold t the foreground is predicted where the score is >= t; TP,
      predicted positives and actual positives are pooled over the set per t;
      P = TP / predicted, R = TP / actual, F = (1 + b2) P R / (b2 P + R) with b2 = 0.3
      (0/0 = 0), and maxF = max_t F. This is the InvPT/TaskPrompter meter.
    - ``mIoU``: the mean of the background and foreground IoU, pooled over the set, with the
      probability thresholded at 0.5 (never through the quirk below). The survey's Δm uses a
      saliency mIoU; its meter averages a per-image foreground IoU and takes the best of 15
      thresholds, so its values differ from this one.

    ``official_sigmoid_quirk=True`` scores with sigmoid(probability) instead of the
    probability, as the official InvPT code does by accident (the probability goes through
    ``torch.sigmoid`` as if it were a logit). Scores then lie in [0.5, 0.731], so only the
    thresholds <= 0.7 discriminate; switch it on to reproduce published maxF numbers.

    Args:
        task: the task measured.
        thresholds: increasing thresholds in (0, 1); default 0.05, 0.10, ..., 0.95.
        official_sigmoid_quirk: apply sigmoid to the probability before the maxF thresholds.
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir`` of :class:`TaskMetric`.
    """

    def __init__(self,
                 task: str,
                 thresholds: Sequence[float] = tuple(i / 20 for i in range(1, 20)),
                 official_sigmoid_quirk: bool = False,
                 **kwargs):
        super().__init__(task, **kwargs)
        self.thresholds = check_thresholds('SaliencyMetric', thresholds)
        self.official_sigmoid_quirk = official_sigmoid_quirk

    def sample_stats(self, sample: dict) -> dict:
        prob, gt = self.pred_and_gt(sample, 'pred_saliency', 'gt_saliency')  # [H, W]
        valid = gt != IGNORE
        prob, fg = prob[valid].float(), gt[valid]
        if not ((fg == 0) | (fg == 1)).all():
            raise ValueError(f"SaliencyMetric: gt_saliency of task '{self.task}' "
                             f"({sample.get('img_path')}) must hold 0, 1 or {IGNORE}, got "
                             f'{torch.unique(fg).tolist()}')
        fg = fg.bool()
        score = torch.sigmoid(prob) if self.official_sigmoid_quirk else prob
        fg_at_half = prob >= IOU_THR
        return dict(tp=count_at_least(score[fg], self.thresholds),
                    predicted=count_at_least(score, self.thresholds),
                    actual=np.int64(fg.sum().item()),
                    # [TP, predicted, valid pixels] at threshold 0.5 for the mIoU
                    iou_counts=np.array([(fg_at_half & fg).sum().item(),
                                         fg_at_half.sum().item(), fg.numel()]))

    def summarize(self, stats: list) -> dict:
        total = pool(stats)
        precision = safe_div(total['tp'], total['predicted'])
        recall = safe_div(total['tp'], total['actual'])
        f = safe_div((1 + BETA_SQ) * precision * recall, BETA_SQ * precision + recall)
        tp, predicted, n = total['iou_counts']
        actual = total['actual']
        # background: intersection = n - predicted - actual + tp, union = n - tp
        iou_fg = safe_div(tp, predicted + actual - tp)
        iou_bg = safe_div(n - predicted - actual + tp, n - tp)
        return dict(maxF=float(100 * f.max()), mIoU=float(100 * (iou_fg + iou_bg) / 2))
