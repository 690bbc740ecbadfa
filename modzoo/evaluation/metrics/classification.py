"""Top-k accuracy of single-label classification."""
from typing import Sequence, Union

import numpy as np

from modzoo.registry import METRICS
from .base import TaskMetric, pool


@METRICS.register_module()
class Accuracy(TaskMetric):
    """Top-k accuracy in percent, pooled over the task's samples.

    A sample counts as correct at k when its ``gt_label`` is among the k highest of its
    ``pred_score`` [C], i.e. when fewer than k classes score strictly higher (a tie with
    the true class counts in its favour); with k >= C every sample is correct.
    Keys: ``top1``, ``top5``, ... one per k.

    Args:
        task: the task measured.
        topk: the k (an int or a sequence of ints), default ``(1, 5)``.
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir`` of :class:`TaskMetric`.
    """

    def __init__(self, task: str, topk: Union[int, Sequence[int]] = (1, 5), **kwargs):
        super().__init__(task, **kwargs)
        self.topk = (topk, ) if isinstance(topk, int) else tuple(topk)
        if not self.topk or any(not isinstance(k, int) or k < 1 for k in self.topk):
            raise ValueError(f'Accuracy: `topk` must be positive ints, got {topk!r}')

    def sample_stats(self, sample: dict) -> dict:
        score = self.field(sample, 'pred_score')  # [C]
        label = int(self.field(sample, 'gt_label'))
        if score.dim() != 1:
            raise ValueError(f"Accuracy: pred_score of task '{self.task}' "
                             f'({sample.get("img_path")}) must be [C], got {tuple(score.shape)}')
        if not 0 <= label < score.numel():
            raise ValueError(f"Accuracy: gt_label {label} of task '{self.task}' "
                             f'({sample.get("img_path")}) is not in [0, {score.numel()})')
        # rank = how many classes score strictly higher than the true class
        rank = int((score > score[label]).sum())
        return dict(correct=np.array([rank < k for k in self.topk], dtype=np.int64),
                    count=np.int64(1))

    def summarize(self, stats: list) -> dict:
        total = pool(stats)
        return {f'top{k}': float(100 * c / total['count'])
                for k, c in zip(self.topk, total['correct'])}
