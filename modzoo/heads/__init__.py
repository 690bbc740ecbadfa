from .classification import ClsHead
from .dense import DepthHead, EdgeHead, NormalHead, SaliencyHead, SemSegHead
from .dpt_decoder import DPTLabelDecoder
from .mask_rcnn import MaskRCNNHead
from .matching import TokenMatching
from .multilabel import MultiLabelClsHead
from .pathway_head import PathwayHead
from .uniperceiver import UPCaptionHead, UPClassificationHead, UPDetectionHead, UPRetrievalHead

__all__ = ['ClsHead', 'MultiLabelClsHead', 'SemSegHead', 'DepthHead', 'NormalHead',
           'EdgeHead', 'SaliencyHead', 'PathwayHead', 'MaskRCNNHead', 'DPTLabelDecoder',
           'TokenMatching', 'UPCaptionHead', 'UPClassificationHead', 'UPDetectionHead',
           'UPRetrievalHead']
