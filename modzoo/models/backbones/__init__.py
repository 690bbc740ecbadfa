from .moe_vit import MoEViT
from .prompted_vit import MultiLaneViT
from .visual_prompt_vit import VisualPromptViT
from .vit import ViT

__all__ = ['MoEViT', 'MultiLaneViT', 'ViT', 'VisualPromptViT']
