"""Class-incremental evaluation: metrics over the classes seen so far, and their summary
over tasks (average, last, forgetting).

After task t the model is evaluated on the validation images that hold a class of tasks
0..t. :class:`~modzoo.engine.loops.IncrementalLoop` hands the metrics the split with
``set_tasks(class_mask, t)`` before each evaluation.
"""
import numpy as np

from modzoo.registry import METRICS
from .classification import Accuracy
from .multilabel import MultiLabelMetric, average_precision


class SeenClassesMixin:
    """Keeps ``class_mask`` (label indices of each task) and ``task_id``, set by the loop.
    Until they are set (e.g. ``tools/test.py`` on a final checkpoint) every class counts."""
    class_mask = None
    task_id = None

    def set_tasks(self, class_mask, task_id):
        self.class_mask = [list(classes) for classes in class_mask]
        self.task_id = int(task_id)

    @property
    def seen_tasks(self):
        """Class indices of tasks 0..task_id, or None when no split is set."""
        return None if self.class_mask is None else self.class_mask[:self.task_id + 1]

    @property
    def seen_classes(self):
        """Sorted label indices of tasks 0..task_id, or None when no split is set."""
        tasks = self.seen_tasks
        return None if tasks is None else sorted(c for classes in tasks for c in classes)


@METRICS.register_module()
class IncrementalMultiLabelMetric(SeenClassesMixin, MultiLabelMetric):
    """:class:`MultiLabelMetric` restricted to the seen classes, as MULTI-LANE measures.

    mAP averages the AP of the seen classes; CP/CR/CF1/CF1_mean/OP/OR/OF1 count the seen
    columns only. Both CF1 conventions are reported: ``CF1_mean`` is the mean of the
    per-class F1 (what MULTI-LANE's code calls CF1), ``CF1`` the F1 of the mean precision
    and mean recall (ML-GCN, KRT). MULTI-LANE's threshold is ``thr=0.8``.

    Args:
        task, thr, **kwargs: as :class:`MultiLabelMetric`.
        classwise: also report ``AP_<class name>`` of every seen class with a positive.
    """

    def __init__(self, task: str, thr: float = 0.5, classwise: bool = False, **kwargs):
        super().__init__(task, thr=thr, **kwargs)
        self.classwise = classwise

    def sample_stats(self, sample: dict) -> dict:
        stats = super().sample_stats(sample)
        seen = self.seen_classes
        return stats if seen is None else {key: value[:, seen] for key, value in stats.items()}

    def summarize(self, stats: list) -> dict:
        metrics = super().summarize(stats)
        if not self.classwise:
            return metrics
        scores = np.concatenate([s['scores'] for s in stats])      # [N, seen classes]
        labels = np.concatenate([s['labels'] for s in stats])
        classes = self.seen_classes or range(scores.shape[1])
        names = class_names(self.dataset_meta, task=self.task)
        for column, label in enumerate(classes):
            if labels[:, column].any():
                name = names[label] if names else label
                metrics[f'AP_{name}'] = 100 * average_precision(scores[:, column],
                                                                labels[:, column])
        return metrics


def class_names(dataset_meta, task):
    """The class names in ``dataset_meta``, of a plain dataset or of the first source of a
    ``MultiTaskDataset`` that labels ``task``; None when there are none."""
    meta = dataset_meta or {}
    if 'classes' in meta:
        return meta['classes']
    for source in meta.get('sources', {}).values():
        if task in source.get('tasks', ()) and 'classes' in source:
            return source['classes']
    return None


@METRICS.register_module()
class IncrementalAccuracy(SeenClassesMixin, Accuracy):
    """Top-k accuracy of single-label class-incremental learning, per task.

    The model masks the scores of unseen classes (the loop's logit mask). Keys: ``top<k>``
    over all evaluated samples, ``top<k>_task<i>`` over the samples whose class belongs to
    task i (the accuracy matrix entry a[i, t]), and ``top<k>_avg``, the unweighted mean of
    the per-task accuracies (the average accuracy of CIL papers).
    """

    def sample_stats(self, sample: dict) -> dict:
        stats = super().sample_stats(sample)
        if self.seen_tasks is None:
            return stats
        label = int(self.field(sample, 'gt_label'))
        task = next((i for i, classes in enumerate(self.seen_tasks) if label in classes), None)
        if task is None:
            raise ValueError(f'IncrementalAccuracy: a sample of class {label} '
                             f"({sample.get('img_path')}) is not of a seen task; "
                             f'seen classes: {self.seen_classes}')
        stats['task'] = np.int64(task)
        return stats

    def summarize(self, stats: list) -> dict:
        metrics = super().summarize(stats)
        if 'task' not in stats[0]:
            return metrics
        per_task = {}
        for task in sorted({int(s['task']) for s in stats}):
            for key, value in super().summarize([s for s in stats if s['task'] == task]).items():
                per_task[f'{key}_task{task}'] = value
        for key in list(metrics):
            tasks = [v for k, v in per_task.items() if k.startswith(f'{key}_task')]
            metrics[f'{key}_avg'] = float(np.mean(tasks))
        return {**metrics, **per_task}


def incremental_summary(history: list, average_keys=('mAP', 'top1_avg')) -> dict:
    """Average, last and forgetting of the metrics measured after each task.

    Args:
        history: the metrics dict measured after each task so far (task 0 first), keys such
            as ``multilabel/mAP`` or ``cls/top1_task2``.
        average_keys: metric names (the part after the last '/') averaged over tasks.

    Returns:
        ``avg/<key>``: the mean over tasks of each averaged key (MULTI-LANE's "amAP",
        the "average mAP" of MLCIL papers; the mean of the per-step average accuracies);
        ``last/<key>``: every key after the latest task;
        ``forgetting/<prefix>/<metric>``: for per-task accuracies ``<metric>_task<i>``, the
        mean over the earlier tasks i < t of (best a[i, s] over s <= t) - a[i, t]
        (Chaudhry et al.; MULTI-LANE's ``evaluate_till_now``); absent after task 0.
    """
    if not history:
        return {}
    latest = history[-1]
    summary = {f'last/{key}': value for key, value in latest.items()}
    for key in latest:
        if key.rsplit('/', 1)[-1] in average_keys and all(key in h for h in history):
            summary[f'avg/{key}'] = float(np.mean([h[key] for h in history]))
    task = len(history) - 1
    for key in latest:
        stem, _, index = key.rpartition('_task')
        if not index.isdigit() or int(index) != 0 or task == 0:
            continue
        drops = []
        for i in range(task):
            column = [h[f'{stem}_task{i}'] for h in history if f'{stem}_task{i}' in h]
            drops.append(max(column) - latest[f'{stem}_task{i}'])
        summary[f'forgetting/{stem}'] = float(np.mean(drops))
    return summary
