from .classification import ClsHead
from .dense import DepthHead, EdgeHead, NormalHead, SaliencyHead, SemSegHead
from .mask_rcnn import MaskRCNNHead
from .multilabel import MultiLabelClsHead
from .pathway_head import PathwayHead

__all__ = ['ClsHead', 'MultiLabelClsHead', 'SemSegHead', 'DepthHead', 'NormalHead',
           'EdgeHead', 'SaliencyHead', 'PathwayHead', 'MaskRCNNHead']
