from .prompted_vit import MultiLaneViT
from .vit import ViT

__all__ = ['MultiLaneViT', 'ViT']
