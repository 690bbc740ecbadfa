from .boundary import BoundaryMetric
from .classification import Accuracy
from .depth import DepthMetric
from .incremental import IncrementalAccuracy, IncrementalMultiLabelMetric, incremental_summary
from .multilabel import MultiLabelMetric
from .normals import NormalMetric
from .saliency import SaliencyMetric
from .segmentation import IoUMetric

__all__ = ['Accuracy', 'BoundaryMetric', 'DepthMetric', 'IoUMetric', 'MultiLabelMetric',
           'NormalMetric', 'SaliencyMetric', 'IncrementalAccuracy',
           'IncrementalMultiLabelMetric', 'incremental_summary']
