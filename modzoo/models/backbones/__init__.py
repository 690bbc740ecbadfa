from .beit import BiasSetBEiT
from .moe_vit import MoEViT
from .prompted_vit import MultiLaneViT
from .timm_backbone import TimmBackbone
from .visual_prompt_vit import VisualPromptViT
from .vit import ViT

__all__ = ['BiasSetBEiT', 'MoEViT', 'MultiLaneViT', 'TimmBackbone', 'ViT', 'VisualPromptViT']
