"""The base of every modzoo metric: one task of a multi-task validation set.

The validation set is one dataset that holds the samples of all tasks; each sample names the
tasks it is labelled for in its ``tasks`` metainfo. A :class:`TaskMetric` measures one task
and passes over the samples of the others.

``process`` keeps one small entry of sufficient statistics per sample (numpy arrays that add
up over samples: counts, sums, histograms; only the multi-label mAP, which ranks samples,
keeps the scores) and an empty dict for a sample of another task.
One entry per sample is what lets mmengine's ``collect_results`` drop the duplicates that a
distributed sampler pads the last batch with, so results pooled over ranks stay exact.
"""
from abc import abstractmethod
from typing import Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric


class TaskMetric(BaseMetric):
    """A dataset-pooled metric of one task.

    Args:
        task: the task measured; samples whose ``tasks`` metainfo lacks it are passed over.
        prefix: the prefix of the metric keys; defaults to ``task`` (keys like ``depth/rmse``).
        collect_device, collect_dir: as in :class:`mmengine.evaluator.BaseMetric`.

    Subclasses implement ``sample_stats(sample) -> dict`` (statistics of one sample) and
    ``summarize(stats: list[dict]) -> dict`` (the metrics of the whole set).
    """

    def __init__(self,
                 task: str,
                 prefix: Optional[str] = None,
                 collect_device: str = 'cpu',
                 collect_dir: Optional[str] = None):
        if not isinstance(task, str) or not task:
            raise ValueError(f'{type(self).__name__}: `task` must be a task name, got {task!r}')
        super().__init__(collect_device=collect_device, prefix=prefix or task,
                         collect_dir=collect_dir)
        self.task = task

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            labelled = self.task in sample.get('tasks', ())
            self.results.append(self.sample_stats(sample) if labelled else {})

    def compute_metrics(self, results: list) -> dict:
        stats = [entry for entry in results if entry]
        if not stats:
            raise ValueError(
                f"{type(self).__name__}: no validation sample is labelled for task "
                f"'{self.task}' (a sample names its tasks in its `tasks` metainfo); check the "
                "metric's `task` against the tasks of the validation datasets")
        return self.summarize(stats)

    @abstractmethod
    def sample_stats(self, sample: dict) -> dict:
        """Statistics of one sample: a dict of numpy arrays (on the CPU)."""

    @abstractmethod
    def summarize(self, stats: list) -> dict:
        """The metrics (floats) from the statistics of every sample of the task."""

    def field(self, sample: dict, key: str) -> torch.Tensor:
        """``sample[key]``, or an error that names the key, the task and the image."""
        if key not in sample:
            raise KeyError(
                f"{type(self).__name__}: a sample of task '{self.task}' "
                f"({sample.get('img_path', 'no img_path')}) has no '{key}'; it has "
                f'{sorted(sample)}')
        return sample[key]

    def pred_and_gt(self, sample: dict, pred_key: str, gt_key: str):
        """``(sample[pred_key], sample[gt_key])``, checked to have the same shape."""
        pred, gt = self.field(sample, pred_key), self.field(sample, gt_key)
        if pred.shape != gt.shape:
            raise ValueError(
                f"{type(self).__name__}: {pred_key} has shape {tuple(pred.shape)} but "
                f"{gt_key} has {tuple(gt.shape)} in a sample of task '{self.task}' "
                f"({sample.get('img_path', 'no img_path')}); they must match")
        return pred, gt


def pool(stats: list) -> dict:
    """Sum a list of per-sample statistics dicts key by key."""
    return {key: sum(entry[key] for entry in stats) for key in stats[0]}


def safe_div(num, den):
    """``num / den`` elementwise, 0 where ``den`` is 0 (as float64 numpy)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def count_at_least(values: torch.Tensor, thresholds: Sequence[float]) -> np.ndarray:
    """How many of ``values`` (any shape) are ``>=`` each threshold: int64 [T].

    ``thresholds`` must be increasing. One pass: each value's bucket is the number of
    thresholds it reaches, and the counts are the reversed cumulative sum of the buckets.
    """
    bounds = torch.as_tensor(thresholds, dtype=torch.float64, device=values.device)
    buckets = torch.bucketize(values.reshape(-1).double(), bounds, right=True)
    per_bucket = torch.bincount(buckets, minlength=len(bounds) + 1)
    return per_bucket.flip(0).cumsum(0).flip(0)[1:].cpu().numpy()


def check_thresholds(metric: str, thresholds: Sequence[float]) -> tuple:
    """The thresholds as a tuple of floats, checked to be increasing and in (0, 1)."""
    values = tuple(float(t) for t in thresholds)
    if not values or any(not 0 < t < 1 for t in values) or \
            any(a >= b for a, b in zip(values, values[1:])):
        raise ValueError(f'{metric}: `thresholds` must be increasing values in (0, 1), '
                         f'got {thresholds!r}')
    return values
