from .boundary import BoundaryMetric
from .caption import CaptionMetric, caption_tokens
from .classification import Accuracy
from .coco import CocoMetric
from .depth import DepthMetric
from .incremental import IncrementalAccuracy, IncrementalMultiLabelMetric, incremental_summary
from .multilabel import MultiLabelMetric
from .normals import NormalMetric
from .retrieval import RetrievalMetric, retrieval_ranks
from .saliency import SaliencyMetric
from .segmentation import IoUMetric

__all__ = ['Accuracy', 'BoundaryMetric', 'CaptionMetric', 'caption_tokens', 'CocoMetric',
           'RetrievalMetric', 'retrieval_ranks', 'DepthMetric', 'IoUMetric', 'MultiLabelMetric',
           'NormalMetric', 'SaliencyMetric', 'IncrementalAccuracy',
           'IncrementalMultiLabelMetric', 'incremental_summary']
