from .beit import BiasSetBEiT
from .moe_vit import MoEViT
from .prompted_vit import MultiLaneViT
from .visual_prompt_vit import VisualPromptViT
from .vit import ViT

__all__ = ['BiasSetBEiT', 'MoEViT', 'MultiLaneViT', 'ViT', 'VisualPromptViT']
