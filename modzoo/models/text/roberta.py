"""RoBERTa as a text encoder, through Hugging Face ``transformers`` (optional extra)."""
import json
import os.path as osp
from typing import Optional

from mmengine.model import BaseModule
from torch import Tensor

from modzoo.hub import resolve
from modzoo.registry import MODELS
from .transformer_text_encoder import causal_mask


def _transformers():
    try:
        import transformers
    except ImportError as error:
        raise ImportError('RobertaTextEncoder needs `transformers`: pip install transformers '
                          "(or pip install 'modzoo[roberta]')") from error
    return transformers


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
        pretrained: load the weights (safetensors, weights only); False builds the
            architecture from ``config.json`` with random weights.
        vocab_size: unused, accepted so the model can fill it in for any text encoder.
    """

    def __init__(self, model: str = 'FacebookAI/roberta-base', pretrained: bool = True,
                 vocab_size: Optional[int] = None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        transformers = _transformers()
        with open(roberta_file(model, 'config.json')) as f:
            config = transformers.RobertaConfig(**json.load(f), attn_implementation='sdpa')
        self.roberta = transformers.RobertaModel(config, add_pooling_layer=False)
        self.embed_dims = config.hidden_size
        self.max_length = config.max_position_embeddings - config.pad_token_id - 1
        if vocab_size is not None and vocab_size != config.vocab_size:
            raise ValueError(f'RobertaTextEncoder: the tokenizer has {vocab_size} tokens but '
                             f'{model} has {config.vocab_size}; use its tokenizer.json')
        if pretrained:
            from safetensors.torch import load_file
            state = load_file(roberta_file(model, 'model.safetensors'))
            state = {k[len('roberta.'):] if k.startswith('roberta.') else k: v
                     for k, v in state.items() if not k.startswith(('lm_head.', 'pooler.'))}
            missing, unexpected = self.roberta.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.endswith('position_ids')]
            if missing or unexpected:
                raise KeyError(f'RobertaTextEncoder: the weights of {model} do not fit: missing '
                               f'{missing}, unexpected {unexpected}')

    def encode(self, token_ids: Tensor, mask: Tensor, causal: bool = False) -> Tensor:
        """``token_ids`` long [B, L], ``mask`` bool [B, L] -> [B, L, hidden]."""
        attn = mask.bool()[:, None, :].expand(-1, token_ids.shape[1], -1)
        if causal:
            attn = attn & ~causal_mask(token_ids.shape[1], token_ids.device)
        # a 4-D boolean mask (True = may attend) goes to SDPA as it is
        out = self.roberta(input_ids=token_ids, attention_mask=attn[:, None])
        return out.last_hidden_state
