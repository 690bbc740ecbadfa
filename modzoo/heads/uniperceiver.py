"""Uni-Perceiver v2's task heads: every task is a softmax over a candidate set of
``cos(g(f(x)), g(f(y))) / tau``. The heads hold only the per-family temperature (and what a
task needs besides); the encoders and the decoder are the model's (:class:`UniPerceiver`),
which every call receives."""
from typing import List, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torchvision.ops import box_iou

from modzoo.models.uniperceiver.caption_search import beam_search, greedy_search
from modzoo.models.uniperceiver.objective import LogitScale, contrastive_loss, cosine_logits
from modzoo.registry import MODELS
from .losses import stack_gt
from .mask_rcnn import in_original_image


def _add_aux(losses: dict, *auxes: dict) -> dict:
    """Adds the decoder's MoE aux losses to ``losses['loss']``, logging each (detached)."""
    for aux in auxes:
        for name, value in aux.items():
            losses['loss'] = losses['loss'] + value
            key = name[len('loss_'):] if name.startswith('loss_') else name
            losses[key] = losses.get(key, 0) + value.detach()
    return losses


def check_class_names(head: str, class_names: Sequence[str]) -> List[str]:
    """Class names as texts ('_' read as a space), checked non-empty and distinct."""
    names = [str(n).replace('_', ' ').strip() for n in class_names]
    if not names or not all(names):
        raise ValueError(f'{head}: class_names must be non-empty strings, got {class_names!r}')
    seen = {}
    for raw, name in zip(class_names, names):
        if name in seen:
            raise ValueError(f'{head}: class_names has {raw!r} twice (as {seen[name]!r} too); '
                             'every candidate must be distinct')
        seen[name] = raw
    return names


class UniPerceiverHead(BaseModule):
    """Base of the task heads: the task family and its learnable, capped temperature.

    Args:
        init_temperature: tau at the start (v1: 0.07).
        max_scale: cap of 1/tau (v1: 100).
    """
    family = None

    def __init__(self, init_temperature: float = 0.07, max_scale: float = 100.0,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.logit_scale = LogitScale(init_temperature, max_scale)

    def check_model(self, model, task: str):
        """Raise when ``model`` lacks what this head needs (called when the model is built)."""

    def image_features(self, model, feats, data_samples, proposals=None):
        """(ImageTokens, decoder output [B, 1 + N, D], aux)."""
        img = model.image_tokens(feats, data_samples, proposals)
        out, aux = model.decode(img.tokens, img.types, img.valid, self.family)
        return img, out, aux

    def candidates(self, model, texts: Sequence[str]):
        """g(f(text)) of fixed candidate texts [K, D] (cached during evaluation) and aux."""
        return model.cached((self.family, tuple(texts)),
                            lambda: model.text_features(texts, self.family))


@MODELS.register_module()
class UPClassificationHead(UniPerceiverHead):
    """Image classification: the <SPE> output against the class names' features.

    Args:
        class_names: one text per class, in label order (distinct).
    """
    family = 'classification'

    def __init__(self, class_names: Sequence[str], **kwargs):
        super().__init__(**kwargs)
        self.class_names = check_class_names(type(self).__name__, class_names)

    def logits(self, model, feats, data_samples):
        _, out, aux = self.image_features(model, feats, data_samples)
        classes, class_aux = self.candidates(model, self.class_names)
        return cosine_logits(out[:, 0], classes, self.logit_scale()), (aux, class_aux)

    def loss(self, model, feats, data_samples) -> dict:
        logits, auxes = self.logits(model, feats, data_samples)
        target = stack_gt(data_samples, 'gt_label', type(self).__name__).to(logits.device)
        acc = (logits.detach().argmax(1) == target).float().mean() * 100
        return _add_aux(dict(loss=F.cross_entropy(logits, target), acc=acc), *auxes)

    @torch.no_grad()
    def predict(self, model, feats, data_samples):
        """``pred_score`` (softmax [C]) and ``pred_label``."""
        scores = self.logits(model, feats, data_samples)[0].softmax(1)
        for sample, score in zip(data_samples, scores):
            sample.pred_score, sample.pred_label = score, score.argmax()
        return data_samples


@MODELS.register_module()
class UPDetectionHead(UniPerceiverHead):
    """Detection / instance segmentation as per-proposal classification (UP-v2, Eq. 5).

    The model's class-agnostic proposal head trains on the batch with its own losses; each
    proposal's region-token output is classified against the class names plus a
    ``background`` text. A proposal whose best IoU with a gt box reaches ``iou_thr`` learns
    that box's class, the others background. Predictions keep the proposal's box and mask;
    score = objectness x the best class probability.

    Args:
        class_names: one text per class (distinct, without the background).
        background: the background candidate's text.
        iou_thr: IoU for a proposal to count as an object.
        mask_thr: mask probability threshold of the predicted masks.
    """
    family = 'detection'

    def __init__(self, class_names: Sequence[str], background: str = 'background',
                 iou_thr: float = 0.5, mask_thr: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.class_names = check_class_names(type(self).__name__,
                                             list(class_names) + [background])[:-1]
        self.background = background
        self.iou_thr = iou_thr
        self.mask_thr = mask_thr

    def check_model(self, model, task):
        if model.proposal_head is None:
            raise ValueError(f"UPDetectionHead (task '{task}') needs the model's proposal_head "
                             '(region tokens); the model has only global tokens')

    def region_logits(self, model, feats, data_samples, proposals=None):
        """(proposals, logits [B, O, C + 1], valid [B, O], aux losses)."""
        img, out, aux = self.image_features(model, feats, data_samples, proposals)
        first = 1 + img.types.index('region') if 'region' in img.types else out.shape[1]
        cands, cand_aux = self.candidates(model, self.class_names + [self.background])
        logits = cosine_logits(out[:, first:], cands, self.logit_scale())
        return img.proposals, logits, img.valid[:, first - 1:], (aux, cand_aux)

    def targets(self, proposals, data_samples, shape) -> torch.Tensor:
        """Class of every proposal [B, O] (background = C, -100 on padding)."""
        target = torch.full(shape, -100, dtype=torch.long)
        for i, (props, sample) in enumerate(zip(proposals, data_samples)):
            gt = sample.gt_instances
            labels = torch.full((len(props), ), len(self.class_names), dtype=torch.long)
            if len(gt) and len(props):
                iou, match = box_iou(props.bboxes.detach(), gt.bboxes.to(props.bboxes)).max(1)
                hit = iou >= self.iou_thr
                labels[hit] = gt.labels[match[hit].cpu()].cpu()
            target[i, :len(props)] = labels
        return target

    def loss(self, model, feats, data_samples) -> dict:
        proposal_losses = model.proposal_head.loss(feats, data_samples)
        proposals, logits, valid, auxes = self.region_logits(model, feats, data_samples)
        target = self.targets(proposals, data_samples, logits.shape[:2]).to(logits.device)
        if (target >= 0).any():
            region = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100)
        else:   # no proposal yet: nothing to classify, the proposal head still learns
            region = logits.sum() * 0
        losses = dict(loss=proposal_losses['loss'] + region, region_cls=region.detach(),
                      proposal=proposal_losses['loss'].detach(),
                      proposals_per_image=valid.sum(1).float().mean())
        return _add_aux(losses, *auxes)

    @torch.no_grad()
    def predict(self, model, feats, data_samples):
        """``pred_instances`` (bboxes, scores, labels, masks) in original-image pixels."""
        proposals, logits, _, _ = self.region_logits(model, feats, data_samples)
        probs = logits.softmax(-1)[..., :len(self.class_names)]
        for i, (sample, props) in enumerate(zip(data_samples, proposals)):
            score, label = probs[i, :len(props)].max(-1)
            det = InstanceData(bboxes=props.bboxes, scores=props.scores * score,
                               labels=label, mask_logits=props.mask_logits)
            sample.pred_instances = in_original_image(det, sample, self.mask_thr)
        return data_samples


def _captions(data_samples, head: str) -> List[List[str]]:
    caps = []
    for sample in data_samples:
        texts = [t for t in sample.get('gt_text', []) if isinstance(t, str)]
        if not texts:
            raise KeyError(f"{head} needs captions ('gt_text', a non-empty list of str) in "
                           f"every sample; {sample.metainfo.get('img_path', 'a sample')} has "
                           f"{sample.get('gt_text')!r}")
        caps.append(texts)
    return caps


def _one_caption_each(captions: List[List[str]]) -> List[str]:
    """A random caption of each image (the global torch generator decides)."""
    return [c[int(torch.randint(len(c), ()))] for c in captions]


@MODELS.register_module()
class UPCaptionHead(UniPerceiverHead):
    """Captioning: ``[<SPE>, image, text]`` with image tokens visible to all and text causal;
    the output at each text position is compared with every vocabulary token's features.

    Args:
        beam_size: 1 for greedy decoding, more for beam search.
        max_length: longest generated caption in tokens with ``<s>``/``</s>`` (default the
            tokenizer's ``max_length``).
    """
    family = 'captioning'

    def __init__(self, beam_size: int = 1, max_length: int = None, **kwargs):
        super().__init__(**kwargs)
        if beam_size < 1:
            raise ValueError(f'UPCaptionHead: beam_size must be >= 1, got {beam_size}')
        self.beam_size = beam_size
        self.max_length = max_length

    def next_token_logits(self, model, img, ids, mask, rows):
        """Logits [R, L, V] of the token after each of ``ids`` [R, L] (rows index ``img``)."""
        n = img.tokens.shape[1]
        text = model.text_tokens(ids, mask, causal=True)
        tokens = torch.cat([img.tokens[rows], text], 1)
        valid = torch.cat([img.valid[rows], mask], 1)
        out, aux = model.decode(tokens, img.types + ['text'] * ids.shape[1], valid,
                                self.family, causal_from=n)
        vocab, vocab_aux = model.vocabulary_features(self.family)
        return cosine_logits(out[:, 1 + n:], vocab, self.logit_scale()), (aux, vocab_aux)

    def loss(self, model, feats, data_samples) -> dict:
        ids, mask = model.encode_texts(
            _one_caption_each(_captions(data_samples, type(self).__name__)))
        img = model.image_tokens(feats, data_samples)
        rows = torch.arange(len(data_samples), device=ids.device)
        logits, auxes = self.next_token_logits(model, img, ids[:, :-1], mask[:, :-1], rows)
        keep = mask[:, 1:]
        loss = F.cross_entropy(logits[keep], ids[:, 1:][keep])
        acc = (logits.detach()[keep].argmax(-1) == ids[:, 1:][keep]).float().mean() * 100
        return _add_aux(dict(loss=loss, token_acc=acc), *auxes)

    @torch.no_grad()
    def generate(self, model, feats, data_samples) -> torch.Tensor:
        """Token ids [B, <= max_length] of the generated captions."""
        img = model.image_tokens(feats, data_samples)
        tok = model.tokenizer

        def step(ids, rows):
            mask = torch.ones_like(ids, dtype=torch.bool)
            logits, _ = self.next_token_logits(model, img, ids, mask, rows)
            return logits[:, -1].log_softmax(-1)

        common = dict(bos=tok.bos_id, eos=tok.eos_id, pad=tok.pad_id,
                      max_length=self.max_length or tok.max_length,
                      banned=(tok.bos_id, tok.pad_id, tok.unk_id), device=img.tokens.device)
        if self.beam_size == 1:
            return greedy_search(step, len(data_samples), **common)
        return beam_search(step, len(data_samples), self.beam_size, **common)

    def predict(self, model, feats, data_samples):
        """``pred_text`` (str) of every sample."""
        for sample, ids in zip(data_samples, self.generate(model, feats, data_samples)):
            sample.pred_text = model.tokenizer.decode(ids.tolist())
        return data_samples


@MODELS.register_module()
class UPRetrievalHead(UniPerceiverHead):
    """Image-text retrieval: the <SPE> outputs of image and caption, symmetric contrastive
    loss with in-batch negatives, gathered from all ranks (with gradients) when ``gather``.

    Args:
        gather: use every rank's pairs as negatives (UP-v2's feature gathering).
    """
    family = 'retrieval'

    def __init__(self, gather: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.gather = gather

    def loss(self, model, feats, data_samples) -> dict:
        captions = _one_caption_each(_captions(data_samples, type(self).__name__))
        _, out, aux = self.image_features(model, feats, data_samples)
        texts, text_aux = model.text_features(captions, self.family)
        loss = contrastive_loss(out[:, 0], texts, self.logit_scale(), self.gather)
        return _add_aux(dict(loss=loss, scale=self.logit_scale().detach()), aux, text_aux)

    @torch.no_grad()
    def predict(self, model, feats, data_samples):
        """``pred_image_embedding`` [D] and ``pred_text_embeddings`` [n_captions, D]."""
        captions = _captions(data_samples, type(self).__name__)
        _, out, _ = self.image_features(model, feats, data_samples)
        texts, _ = model.text_features([c for caps in captions for c in caps], self.family)
        start = 0
        for sample, image, caps in zip(data_samples, out[:, 0], captions):
            sample.pred_image_embedding = image
            sample.pred_text_embeddings = texts[start:start + len(caps)]
            start += len(caps)
        return data_samples
