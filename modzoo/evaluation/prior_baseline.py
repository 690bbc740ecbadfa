"""The trivial baseline a trained model must beat: every task predicted from its training prior."""
from collections import defaultdict

import torch

from modzoo.structures import DENSE_FIELDS


class PriorBaseline:
    """Predicts, for each task, what the training labels alone suggest, ignoring the image.

    classification (``gt_label``): the class frequencies as scores (top-1 = majority class);
    multi-label (``gt_labels``): each class's frequency; segmentation and parts: the majority
    class everywhere; depth: the mean depth; normals: the mean normal; edges and saliency:
    the positive-pixel frequency as a constant probability.

    Args:
        heads (dict): ``task -> head`` of the model to compare with; each head's ``gt_key``
            names its label field, and classification heads give ``num_classes``.
    """

    def __init__(self, heads):
        self.gt_keys = {task: head.gt_key for task, head in heads.items()}
        self.num_classes = {task: getattr(head, 'num_classes', None)
                            for task, head in heads.items()}
        self.stats = {}

    def fit(self, dataset):
        """Accumulate label statistics over every sample of ``dataset`` (a MultiTaskDataset)."""
        sums = defaultdict(lambda: 0)
        counts = defaultdict(lambda: 0)
        for idx in range(len(dataset)):
            sample = dataset[idx]['data_samples']
            for task in sample.tasks:
                key = self.gt_keys[task]
                value = getattr(sample, key)
                stat, count = self._statistic(key, value, self.num_classes[task])
                sums[task] = sums[task] + stat
                counts[task] = counts[task] + count
        self.stats = {task: sums[task] / max(counts[task], 1) for task in sums}
        return self

    @staticmethod
    def _statistic(key, value, num_classes):
        """(sum, count) whose ratio is the prior of one label."""
        if key == 'gt_label':
            return torch.bincount(value.reshape(1), minlength=num_classes).float(), 1
        if key == 'gt_labels':
            return value.float(), 1
        if key in ('gt_sem_seg', 'gt_parts'):
            valid = value[value != DENSE_FIELDS[key]['ignore']]
            return torch.bincount(valid.flatten(), minlength=256).float(), valid.numel()
        if key == 'gt_normal':
            return value.flatten(1).sum(1), 1
        if key == 'gt_depth':
            valid = value[value > 0]
            return valid.sum(), valid.numel()
        if key in ('gt_edge', 'gt_saliency'):
            valid = value[value != 255]
            return valid.float().sum(), valid.numel()
        raise KeyError(f'PriorBaseline does not know the label field {key!r}')

    def predict(self, data_samples):
        for sample in data_samples:
            for task in sample.tasks:
                self._predict_one(sample, task)
        return data_samples

    def _predict_one(self, sample, task):
        key, prior = self.gt_keys[task], self.stats[task]
        gt = getattr(sample, key)
        if key == 'gt_label':
            sample.pred_score = prior
            sample.pred_label = prior.argmax()
        elif key == 'gt_labels':
            sample.pred_scores = prior
        elif key in ('gt_sem_seg', 'gt_parts'):
            setattr(sample, 'pred_' + key[3:], torch.full_like(gt, int(prior.argmax())))
        elif key == 'gt_depth':
            sample.pred_depth = torch.full_like(gt, float(prior))
        elif key == 'gt_normal':
            sample.pred_normal = (prior / prior.norm().clamp_min(1e-12))[:, None, None] \
                .expand_as(gt).clone()
        else:
            setattr(sample, 'pred_' + key[3:], torch.full(gt.shape, float(prior)))
