from .ade20k import ADE20KDataset
from .class_incremental import ClassSubset, split_classes
from .coco import CocoDataset
from .imagenet import ImageNetDataset
from .multi_task import MultiTaskDataset
from .nyud import NYUDDataset
from .pascal_context import PascalContextDataset
from .synth_episodes import SynthEpisodes
from .task_balanced_sampler import TaskBalancedSampler
from .transforms import (CenterCrop, LoadImage, LoadTaskAnnotations, PackTaskInputs, Pad,
                         PhotoMetricDistortion, RandomCrop, RandomFlip, RandomResizedCrop,
                         RandomScale, Resize)
from .voc import VOCDataset

__all__ = [
    'ADE20KDataset', 'CocoDataset', 'ImageNetDataset', 'MultiTaskDataset', 'NYUDDataset',
    'PascalContextDataset', 'SynthEpisodes', 'TaskBalancedSampler', 'VOCDataset', 'CenterCrop',
    'LoadImage', 'LoadTaskAnnotations', 'PackTaskInputs', 'Pad', 'PhotoMetricDistortion',
    'RandomCrop', 'RandomFlip', 'RandomResizedCrop', 'RandomScale', 'Resize', 'ClassSubset',
    'split_classes'
]
