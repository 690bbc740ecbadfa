"""Semantic segmentation and human parts: mIoU and pixel accuracy."""
import numpy as np
import torch

from modzoo.registry import METRICS
from modzoo.structures import DENSE_FIELDS
from .base import TaskMetric, pool


@METRICS.register_module()
class IoUMetric(TaskMetric):
    """Dataset-pooled mIoU and aAcc, in percent, of ``pred_<key>`` [H, W] against
    ``gt_<key>`` [H, W].

    Pixels whose gt is the ignore value (255, padding included) are never counted. Per
    class c, over all valid pixels of the set: TP_c, FP_c, FN_c, and
    IoU_c = TP_c / (TP_c + FP_c + FN_c).

    - ``mIoU``: the mean of IoU_c over the classes with TP_c + FP_c + FN_c > 0, i.e. the
      classes that occur in the gt or the prediction somewhere in the set (mmseg's nanmean).
      The InvPT/ATRC meter averages over all ``num_classes`` and counts an absent class as 0;
      on PASCAL-Context and NYUD-v2 val every class occurs, so the two agree there.
    - ``aAcc``: the fraction of valid pixels whose prediction is right.

    Args:
        task: the task measured.
        num_classes: the number of classes; gt and predictions must lie in [0, num_classes).
        key: ``'sem_seg'`` or ``'parts'``, which gt/pred pair to read.
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir`` of :class:`TaskMetric`.
    """

    def __init__(self, task: str, num_classes: int, key: str = 'sem_seg', **kwargs):
        super().__init__(task, **kwargs)
        if key not in ('sem_seg', 'parts'):
            raise ValueError(f"IoUMetric: `key` must be 'sem_seg' or 'parts', got {key!r}")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f'IoUMetric: `num_classes` must be a positive int, got '
                             f'{num_classes!r}')
        self.num_classes = num_classes
        self.key = key
        self.ignore = DENSE_FIELDS[f'gt_{key}']['ignore']

    def sample_stats(self, sample: dict) -> dict:
        pred, gt = self.pred_and_gt(sample, f'pred_{self.key}', f'gt_{self.key}')  # [H, W]
        valid = gt != self.ignore
        pred, gt = pred[valid].long(), gt[valid].long()
        for name, labels in ((f'gt_{self.key}', gt), (f'pred_{self.key}', pred)):
            outside = (labels < 0) | (labels >= self.num_classes)
            if outside.any():
                raise ValueError(
                    f"IoUMetric: {name} of task '{self.task}' ({sample.get('img_path')}) "
                    f'holds {labels[outside][0].item()}, outside [0, {self.num_classes}) '
                    f'and not the ignore value {self.ignore}')

        def area(labels: torch.Tensor) -> np.ndarray:
            return torch.bincount(labels, minlength=self.num_classes).cpu().numpy()

        return dict(intersect=area(gt[gt == pred]), area_pred=area(pred), area_gt=area(gt))

    def summarize(self, stats: list) -> dict:
        total = pool(stats)
        union = total['area_pred'] + total['area_gt'] - total['intersect']
        present = union > 0
        if not present.any():
            raise ValueError(f"IoUMetric: every gt_{self.key} pixel of task '{self.task}' is "
                             f'the ignore value {self.ignore}; there is nothing to measure')
        return dict(mIoU=float(100 * np.mean(total['intersect'][present] / union[present])),
                    aAcc=float(100 * total['intersect'].sum() / total['area_gt'].sum()))
