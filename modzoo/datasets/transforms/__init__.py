"""Label-aligned data transforms (mmcv ``BaseTransform``s registered in modzoo's TRANSFORMS)."""
from .formatting import PackTaskInputs
from .geometric import (CenterCrop, Pad, RandomCrop, RandomFlip, RandomResize, RandomResizedCrop,
                        RandomScale, Resize)
from .loading import LoadImage, LoadTaskAnnotations
from .photometric import PhotoMetricDistortion

__all__ = [
    'LoadImage', 'LoadTaskAnnotations', 'Resize', 'RandomResize', 'RandomScale', 'RandomCrop',
    'CenterCrop', 'RandomResizedCrop', 'RandomFlip', 'Pad', 'PhotoMetricDistortion',
    'PackTaskInputs'
]
