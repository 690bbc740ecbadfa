from .classification import ClsHead
from .dense import DepthHead, EdgeHead, NormalHead, SaliencyHead, SemSegHead
from .multilabel import MultiLabelClsHead

__all__ = ['ClsHead', 'MultiLabelClsHead', 'SemSegHead', 'DepthHead', 'NormalHead',
           'EdgeHead', 'SaliencyHead']
