"""Class-incremental splits: the classes arrive in tasks, each task a few new classes.

The protocol of the multi-label class-incremental benchmarks (KRT, MULTI-LANE): classes are
taken in alphabetical order of their names; the first task has ``base`` classes and every
later task ``increment`` classes ("B40-C10" on COCO: 40 classes, then 4 tasks of 10;
"B0-C10": no separate base, 8 tasks of 10). Task t trains on every image with at least one
label of its classes, so an image can appear in several tasks.
"""
from typing import List, Sequence

import numpy as np
from torch.utils.data import Dataset

from modzoo.registry import DATASETS
from .multi_task import MultiTaskDataset


def split_name(base: int, increment: int) -> str:
    """'B0-C10' style name of a split."""
    return f'B{base}-C{increment}'


def _first_task_size(base, increment):
    return base or increment


def _divides(num_classes, base, increment):
    first = _first_task_size(base, increment)
    return first <= num_classes and (num_classes - first) % increment == 0


def split_classes(classes: Sequence[str], base: int, increment: int) -> List[List[int]]:
    """The class indices of each task, classes in alphabetical order of their names.

    Args:
        classes: the class names; class i is label i of the dataset.
        base: classes of the first task; 0 means ``increment`` (the "B0" splits).
        increment: classes of every later task.

    Returns:
        ``class_mask``: one list of label indices per task, e.g. for classes
        ('dog', 'cat', 'bird', 'ant') and B2-C1: [[3, 2], [1], [0]].

    Raises:
        ValueError: a repeated class name, or sizes that do not divide the classes; the
            message lists the increments (for this base) and bases (for this increment)
            that do.
    """
    classes = list(classes)
    repeated = sorted({name for name in classes if classes.count(name) > 1})
    if repeated:
        raise ValueError(f'split_classes: class names {repeated} appear more than once in '
                         f'{classes}')
    if not isinstance(base, int) or not isinstance(increment, int) or base < 0 or \
            increment < 1:
        raise ValueError(f'split_classes: base={base!r} and increment={increment!r} must be '
                         'integers, base >= 0 and increment >= 1')
    num = len(classes)
    if not _divides(num, base, increment):
        increments = [c for c in range(1, num + 1) if _divides(num, base, c)]
        bases = [b for b in range(num + 1) if _divides(num, b, increment)]
        raise ValueError(
            f'split_classes: {split_name(base, increment)} does not divide {num} classes: '
            f'after a first task of {_first_task_size(base, increment)} classes the remaining '
            f'{num - _first_task_size(base, increment)} are not a whole number of tasks of '
            f'{increment}. With base={base} the increments that divide are {increments}; '
            f'with increment={increment} the bases are {bases or "none"}.')
    order = sorted(range(num), key=classes.__getitem__)
    first = _first_task_size(base, increment)
    return [order[:first]] + [order[i:i + increment] for i in range(first, num, increment)]


def sample_labels(dataset, index: int) -> np.ndarray:
    """Label indices of sample ``index``, read from the data list (no image is loaded).

    Reads ``gt_labels`` (multi-hot) or ``gt_label`` (one class) of ``get_data_info``;
    a :class:`MultiTaskDataset` is looked through to its source.
    """
    if isinstance(dataset, MultiTaskDataset):
        source, index = dataset.locate(index)
        return sample_labels(dataset.datasets[source], index)
    info = dataset.get_data_info(index)
    if 'gt_labels' in info:
        return np.flatnonzero(np.asarray(info['gt_labels']))
    if 'gt_label' in info:
        return np.array([int(info['gt_label'])])
    raise KeyError(f'{type(dataset).__name__}: sample {index} has neither gt_labels nor '
                   'gt_label in its data info; a class-incremental split needs image-level '
                   'labels (for COCO use CocoDataset(multilabel=True))')


def dataset_classes(dataset) -> tuple:
    """``metainfo['classes']`` of a dataset; the sources of a :class:`MultiTaskDataset` must
    all have the same classes."""
    if isinstance(dataset, MultiTaskDataset):
        found = {tuple(source['classes']) for source in dataset.metainfo['sources'].values()
                 if 'classes' in source}
        if len(found) != 1:
            raise ValueError('class-incremental data: the sources of the MultiTaskDataset '
                             f'must share one class list, got {sorted(found)}')
        return found.pop()
    classes = getattr(dataset, 'metainfo', {}).get('classes')
    if classes is None:
        raise ValueError(f'class-incremental data: {type(dataset).__name__} has no '
                         "metainfo['classes']")
    return tuple(classes)


@DATASETS.register_module()
class ClassSubset(Dataset):
    """The samples of ``dataset`` labelled with at least one of ``classes``.

    Multi-label samples keep only the labels of ``classes``: the other entries of
    ``gt_labels`` become 0, as MULTI-LANE zeroes the targets of past and future tasks.

    Args:
        dataset: a dataset (or its config) of packed samples (``PackTaskInputs``) whose data
            list has ``gt_labels`` or ``gt_label`` (see :func:`sample_labels`).
        classes: the label indices kept.
        name: what the subset is, for error messages (e.g. "task 2 of B3-C2").

    Raises:
        ValueError: a class of ``classes`` has no sample in ``dataset``.
    """

    def __init__(self, dataset, classes: Sequence[int], name: str = 'ClassSubset'):
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        self.classes = sorted(int(c) for c in classes)
        names = dataset_classes(self.dataset)
        labels = [sample_labels(self.dataset, i) for i in range(len(self.dataset))]
        counts = np.bincount(np.concatenate(labels), minlength=len(names)) if labels else \
            np.zeros(len(names), dtype=np.int64)
        missing = [names[c] for c in self.classes if counts[c] == 0]
        if missing:
            raise ValueError(f'{name}: classes {missing} have no sample in '
                             f'{type(self.dataset).__name__} ({len(self.dataset)} samples); '
                             'check the class names against the dataset')
        self.indices = [i for i, lab in enumerate(labels) if np.isin(lab, self.classes).any()]
        self.mask = np.zeros(len(names), dtype=np.float32)
        self.mask[self.classes] = 1.

    @property
    def metainfo(self):
        return self.dataset.metainfo

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, idx):
        item = self.dataset[self.indices[idx]]
        sample = item['data_samples']
        if 'gt_labels' in sample:
            sample.gt_labels = sample.gt_labels * sample.gt_labels.new_tensor(self.mask)
        return item
