from .classification import ClsHead
from .dense import DepthHead, EdgeHead, NormalHead, SaliencyHead, SemSegHead
from .multilabel import MultiLabelClsHead
from .pathway_head import PathwayHead

__all__ = ['ClsHead', 'MultiLabelClsHead', 'SemSegHead', 'DepthHead', 'NormalHead',
           'EdgeHead', 'SaliencyHead', 'PathwayHead']
