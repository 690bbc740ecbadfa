"""Uni-Perceiver v2: image and text encoders, the shared decoder, the objective."""
from .caption_search import beam_search, greedy_search
from .decoder import TASK_FAMILIES, TOKEN_TYPES, UnifiedDecoder, prefix_causal_mask
from .image_tokens import GlobalImageTokens, RegionTokens, box_encoding
from .model import ImageTokens, UniPerceiver
from .objective import LogitScale, contrastive_loss, cosine_logits, gather_with_grad

__all__ = ['beam_search', 'greedy_search', 'TASK_FAMILIES', 'TOKEN_TYPES', 'UnifiedDecoder',
           'prefix_causal_mask', 'GlobalImageTokens', 'RegionTokens', 'box_encoding',
           'ImageTokens', 'UniPerceiver', 'LogitScale', 'contrastive_loss', 'cosine_logits',
           'gather_with_grad']
