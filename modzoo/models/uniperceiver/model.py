"""Uni-Perceiver v2: modality encoders, one shared decoder, every task a likelihood over a
candidate set."""
from typing import List, NamedTuple, Optional, Sequence

import torch
from torch import Tensor, nn

from modzoo.models.multi_task_model import MultiTaskModel
from modzoo.registry import MODELS, TASK_UTILS


class ImageTokens(NamedTuple):
    """What the image encoder hands the decoder.

    tokens: [B, N, D]; types: the type name of each of the N tokens ('global' / 'region');
    valid: bool [B, N]; proposals: the region proposals of every image (None without
    regions), in input-image pixels.
    """
    tokens: Tensor
    types: List[str]
    valid: Tensor
    proposals: Optional[list]


@MODELS.register_module()
class UniPerceiver(MultiTaskModel):
    """Uni-Perceiver v2 (Li et al., CVPR 2023) on modzoo's multi-task model.

    Image: ``backbone`` -> global tokens (``global_tokens``, :class:`GlobalImageTokens`)
    and/or one token per class-agnostic proposal (``proposal_head``, e.g.
    ``MaskRCNNHead(class_agnostic=True)``, -> :class:`RegionTokens`). Text: ``tokenizer``
    (TASK_UTILS) -> ``text_encoder`` (``encode(ids, mask) -> [B, L, C]``) -> linear to D.
    Both go through the shared ``decoder`` (:class:`UnifiedDecoder`) and a LayerNorm +
    linear output projection (v1's ``OUTPUT_PROJ``): that is g(f(.)). Each task's head (the
    ``UP*`` heads) compares g(f(x)) with g(f(y)) of its candidates by cosine / tau.

    Candidate sets that do not depend on the input (class names, the caption vocabulary)
    are encoded once per evaluation and cached on the model; the cache is dropped whenever
    the model goes back to training.

    Args:
        backbone, heads, neck, loss_weights, data_preprocessor: as :class:`MultiTaskModel`;
            ``heads`` are Uni-Perceiver task heads.
        tokenizer: tokenizer cfg (TASK_UTILS, e.g. :class:`BPETokenizer`).
        text_encoder: text encoder cfg; its ``vocab_size`` is filled in from the tokenizer.
        decoder: :class:`UnifiedDecoder` cfg.
        global_tokens: :class:`GlobalImageTokens` cfg (``embed_dim`` filled in), or None.
        proposal_head: class-agnostic proposal head cfg, or None (no region tokens).
        region_tokens: :class:`RegionTokens` cfg (``embed_dim`` filled in).
    """

    def __init__(self, backbone: dict, heads: dict, tokenizer: dict, text_encoder: dict,
                 decoder: dict, global_tokens: Optional[dict] = None,
                 proposal_head: Optional[dict] = None, region_tokens: Optional[dict] = None,
                 neck=None, loss_weights=None, data_preprocessor=None, init_cfg=None):
        super().__init__(backbone, heads, neck, loss_weights, data_preprocessor, init_cfg)
        if global_tokens is None and proposal_head is None:
            raise ValueError('UniPerceiver needs image tokens: global_tokens, proposal_head '
                             'or both')
        self.tokenizer = TASK_UTILS.build(tokenizer)
        self.text_encoder = MODELS.build(
            {**dict(vocab_size=self.tokenizer.vocab_size), **text_encoder})
        self.decoder = MODELS.build(decoder)
        dims = self.decoder.embed_dim
        self.text_proj = nn.Linear(self.text_encoder.embed_dim, dims)
        self.global_tokens = None if global_tokens is None else \
            MODELS.build({**global_tokens, 'embed_dim': dims})
        self.proposal_head = self.region_tokens = None
        if proposal_head is not None:
            if region_tokens is None:
                raise ValueError('UniPerceiver: proposal_head needs region_tokens (RegionTokens '
                                 'cfg with the proposals\' embedding width as in_channels)')
            self.proposal_head = MODELS.build(proposal_head)
            self.region_tokens = MODELS.build({**region_tokens, 'embed_dim': dims})
        self.out_proj = nn.Sequential(nn.LayerNorm(dims), nn.Linear(dims, dims))
        self._cache = {}
        for task, head in self.heads.items():
            head.check_model(self, task)

    def train(self, mode: bool = True):
        self._cache.clear()
        return super().train(mode)

    def head_loss(self, task, feats, data_samples) -> dict:
        return self.heads[task].loss(self, feats, data_samples)

    def head_predict(self, task, feats, data_samples):
        return self.heads[task].predict(self, feats, data_samples)

    # image and text encoders -------------------------------------------------------------
    def image_tokens(self, feats, data_samples, proposals=None) -> ImageTokens:
        """Global tokens, then region tokens (of ``proposals`` if given, else the proposal
        head's)."""
        parts, types, valids = [], [], []
        if self.global_tokens is not None:
            tokens = self.global_tokens(feats)
            parts.append(tokens)
            types += ['global'] * tokens.shape[1]
            valids.append(tokens.new_ones(tokens.shape[:2], dtype=torch.bool))
        if self.proposal_head is not None:
            if proposals is None:
                proposals = self.proposal_head.proposals(feats, data_samples)
            sizes = [tuple(s.metainfo['img_shape'][:2]) for s in data_samples]
            tokens, valid = self.region_tokens(proposals, sizes)
            parts.append(tokens)
            types += ['region'] * tokens.shape[1]
            valids.append(valid)
        return ImageTokens(torch.cat(parts, 1), types, torch.cat(valids, 1), proposals)

    def text_tokens(self, token_ids: Tensor, mask: Tensor, causal: bool = False) -> Tensor:
        """Token ids [B, L] (mask bool [B, L]) -> decoder-width text tokens [B, L, D]."""
        return self.text_proj(self.text_encoder.encode(token_ids, mask, causal=causal))

    def encode_texts(self, texts: Sequence[str]):
        """Tokenize ``texts`` -> (ids [B, L], mask [B, L]) on the model's device."""
        ids, mask = self.tokenizer.encode(texts)
        device = self.decoder.spe.device
        return ids.to(device), mask.to(device)

    # the shared decoder g ----------------------------------------------------------------
    def decode(self, tokens: Tensor, types: Sequence[str], valid: Tensor, family: str,
               role: str = 'input', causal_from: Optional[int] = None):
        """g: ``[<SPE>, tokens]`` -> (projected features [B, 1 + N, D], MoE aux losses)."""
        out, aux = self.decoder(tokens, types, valid, family, role, causal_from)
        return self.out_proj(out), aux

    def text_features(self, texts: Sequence[str], family: str, role: str = 'target'):
        """g(f(text)) of each text: the <SPE> output [K, D] (and MoE aux losses)."""
        ids, mask = self.encode_texts(texts)
        out, aux = self.decode(self.text_tokens(ids, mask), ['text'] * ids.shape[1], mask,
                               family, role)
        return out[:, 0], aux

    def cached(self, key, compute):
        """``compute()``, once per evaluation: cached under ``key`` while not training."""
        if self.training:
            return compute()
        if key not in self._cache:
            with torch.no_grad():
                self._cache[key] = compute()
        return self._cache[key]

    def vocabulary_features(self, family: str = 'captioning'):
        """g(f(token)) of every token of the vocabulary, as a one-token text: [V, D]."""
        def compute():
            vocab = self.tokenizer.vocab_size
            device = self.decoder.spe.device
            ids = torch.arange(vocab, device=device)[:, None]
            mask = torch.ones_like(ids, dtype=torch.bool)
            out, aux = self.decode(self.text_tokens(ids, mask), ['text'], mask, family,
                                   'target')
            return out[:, 0], aux
        return self.cached(('vocabulary', family), compute)

    def parameter_counts(self) -> dict:
        """Parameters per part and in all: ``{'parts': {part: (total, active)}, 'total',
        'active'}``. Active counts k of the E experts of every MoE FFN (what one token uses,
        the paper's way of counting Uni-Perceiver-MoE); the rest counts whole."""
        parts = dict(backbone=[self.backbone], global_tokens=[self.global_tokens],
                     proposals=[self.proposal_head, self.region_tokens],
                     text=[self.text_encoder, self.text_proj],
                     decoder=[self.decoder, self.out_proj], heads=[self.heads])
        counts = {}
        for name, modules in parts.items():
            total = active = 0
            for module in filter(None, modules):
                for sub in module.modules():
                    own = sum(p.numel() for p in sub.parameters(recurse=False))
                    experts = getattr(sub, 'num_experts', None) if hasattr(sub, 'fc1_weight') \
                        else None
                    total += own
                    if experts:
                        expert_params = sum(getattr(sub, n).numel() for n in (
                            'fc1_weight', 'fc1_bias', 'fc2_weight', 'fc2_bias'))
                        own -= expert_params * (1 - sub.top_k / experts)
                    active += own
            counts[name] = (total, int(active))
        return dict(parts=counts, total=sum(t for t, _ in counts.values()),
                    active=sum(a for _, a in counts.values()))
