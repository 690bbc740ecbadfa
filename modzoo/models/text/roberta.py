"""RoBERTa as a text encoder, through Hugging Face ``transformers`` (optional extra)."""
import json
import os.path as osp
from typing import Optional

from mmengine.model import BaseModule
from torch import Tensor

from modzoo.hub import resolve
from modzoo.registry import MODELS
from modzoo.weights import load_weights
from .transformer_text_encoder import causal_mask


def _transformers():
    try:
        import transformers
    except ImportError as error:
        raise ImportError('RobertaTextEncoder needs `transformers`: pip install transformers '
                          "(or pip install 'modzoo[roberta]')") from error
    return transformers


def _roberta_keys(state: dict) -> dict:
    """Hugging Face RoBERTa checkpoint keys -> ``RobertaModel``'s: ``roberta.`` dropped; the
    language-model head, the pooler and old checkpoints' ``position_ids`` buffer left out."""
    out = {}
    for key, value in state.items():
        key = key[len('roberta.'):] if key.startswith('roberta.') else key
        if not key.startswith(('lm_head.', 'pooler.')) and not key.endswith('position_ids'):
            out[key] = value
    return out


def roberta_file(model: str, filename: str) -> str:
    """Local path of ``filename`` of ``model``: a folder on disk, or a Hugging Face repo
    fetched by modzoo's hub rules (offline: an error that names the file to download)."""
    if osp.isdir(model):
        path = osp.join(model, filename)
        if not osp.isfile(path):
            raise FileNotFoundError(f"RobertaTextEncoder: '{path}' not found (the folder must "
                                    f'hold config.json and model.safetensors)')
        return path
    return resolve(f'hf://{model}/{filename}')


@MODELS.register_module()
class RobertaTextEncoder(BaseModule):
    """``transformers.RobertaModel`` with the ``encode(token_ids, mask)`` interface.

    Uni-Perceiver v2 encodes class names, captions and the caption vocabulary with a
    pre-trained RoBERTa-base, fine-tuned with the rest. Pair it with
    ``BPETokenizer(vocab_file='<model>/tokenizer.json')``.

    Args:
        model: Hugging Face repo id (``FacebookAI/roberta-base``) or a local folder with
            ``config.json`` and ``model.safetensors``.
        pretrained: load the weights (``model.safetensors`` through
            :func:`modzoo.weights.load_weights`: weights only, keys that do not fit raise);
            False builds the architecture from ``config.json`` with random weights.
        vocab_size: unused, accepted so the model can fill it in for any text encoder.
    """

    def __init__(self, model: str = 'FacebookAI/roberta-base', pretrained: bool = True,
                 vocab_size: Optional[int] = None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        transformers = _transformers()
        with open(roberta_file(model, 'config.json')) as f:
            config = transformers.RobertaConfig(**json.load(f), attn_implementation='sdpa')
        self.roberta = transformers.RobertaModel(config, add_pooling_layer=False)
        self.embed_dim = config.hidden_size
        self.max_length = config.max_position_embeddings - config.pad_token_id - 1
        if vocab_size is not None and vocab_size != config.vocab_size:
            raise ValueError(f'RobertaTextEncoder: the tokenizer has {vocab_size} tokens but '
                             f'{model} has {config.vocab_size}; use its tokenizer.json')
        if pretrained:
            load_weights(self.roberta, roberta_file(model, 'model.safetensors'),
                         convert=_roberta_keys)

    def encode(self, token_ids: Tensor, mask: Tensor, causal: bool = False) -> Tensor:
        """``token_ids`` long [B, L], ``mask`` bool [B, L] -> [B, L, hidden]."""
        attn = mask.bool()[:, None, :].expand(-1, token_ids.shape[1], -1)
        if causal:
            attn = attn & ~causal_mask(token_ids.shape[1], token_ids.device)
        # a 4-D boolean mask (True = may attend) goes to SDPA as it is
        out = self.roberta(input_ids=token_ids, attention_mask=attn[:, None])
        return out.last_hidden_state
