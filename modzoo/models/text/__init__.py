"""Text side of vision-language models: tokenizers (TASK_UTILS) and text encoders (MODELS)
with ``encode(token_ids [B, L], mask [B, L]) -> [B, L, C]``."""
from .bpe_tokenizer import BPETokenizer, train_bpe
from .roberta import RobertaTextEncoder
from .transformer_text_encoder import TransformerTextEncoder, causal_mask

__all__ = ['BPETokenizer', 'train_bpe', 'RobertaTextEncoder', 'TransformerTextEncoder',
           'causal_mask']
