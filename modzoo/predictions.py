"""A sample's predictions written as the files a user expects (``tools/infer.py``).

One file (two for depth) per image and task, ``<out_dir>/<task>/<stem>.<ext>``:

=====================  ==========================================================================
head                   files
=====================  ==========================================================================
ClsHead                ``.json``: ``label``, ``class``, ``score`` and the ``topk`` (label, class,
                       score) best classes
MultiLabelClsHead,     ``.json``: ``labels`` and ``classes`` scoring at least ``score_thr``,
PathwayHead            ``scores`` [C] of every class (MULTI-LANE: the classes seen so far
(MULTI-LANE)           only are listed; a single-label one writes ClsHead's json)
MaskRCNNHead           ``.json``: ``height``, ``width`` and the ``instances``, COCO-style:
                       ``label``, ``class``, ``score``, ``bbox`` [x, y, w, h] and
                       ``segmentation`` (compressed RLE, ``pycocotools.mask.decode`` reads it)
SemSegHead (parts)     ``.png``: palette png of class indices (reads back as indices with PIL)
DepthHead              ``.png``: uint16 millimetres (NYUD-v2 raw depth); ``.npy``: float32 metres
NormalHead             ``.png``: RGB (n + 1) / 2 * 255 (InvPT; ``read_normal_png`` reads it back)
EdgeHead, SaliencyHead  ``.png``: uint8 probability * 255
=====================  ==========================================================================

Dense predictions are cut to the image (``img_shape``, padding dropped) and resized to the
image as read (``ori_shape``): nearest for class maps, bilinear otherwise (normals
renormalised).
"""
import json
import os
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from modzoo.engine.visualization import PALETTE
from modzoo.evaluation.metrics.coco import encode_masks
from modzoo.heads.classification import ClsHead
from modzoo.heads.dense import DenseHead
from modzoo.heads.mask_rcnn import MaskRCNNHead
from modzoo.heads.multilabel import MultiLabelClsHead
from modzoo.heads.pathway_head import PathwayHead

CLASS_MAPS = ('pred_sem_seg', 'pred_parts')
DEPTH_PNG_SCALE = 1000.0  # uint16 png units per metre


def pred_field(head) -> str:
    """The ``pred_*`` field ``head.predict`` writes (KeyError for a head without a format)."""
    if isinstance(head, MultiLabelClsHead):
        return 'pred_scores'
    if isinstance(head, ClsHead):
        return 'pred_score'
    if isinstance(head, PathwayHead):
        return 'pred_scores' if head.multi_label else 'pred_score'
    if isinstance(head, (DenseHead, MaskRCNNHead)):
        return head.pred_key
    raise KeyError(f'no prediction file format for a {type(head).__name__}: tools/infer.py '
                   'writes classification, multi-label, detection and dense (segmentation, '
                   'depth, normals, edge, saliency) predictions')


def dense_at_original_size(pred: torch.Tensor, sample, field: str) -> torch.Tensor:
    """``pred`` [H_pad, W_pad] or [C, H_pad, W_pad] -> the same at ``sample.ori_shape``."""
    h, w = sample.img_shape[:2]
    pred = pred[..., :h, :w]
    size = tuple(sample.ori_shape[:2])
    if pred.shape[-2:] == size:
        return pred
    batched = pred.float()[None] if pred.dim() == 3 else pred.float()[None, None]
    if field in CLASS_MAPS:
        return F.interpolate(batched, size=size, mode='nearest')[0, 0].to(pred.dtype)
    resized = F.interpolate(batched, size=size, mode='bilinear', align_corners=False)[0]
    if field == 'pred_normal':
        return F.normalize(resized, dim=0)
    return resized if pred.dim() == 3 else resized[0]


def save_prediction(sample, task: str, head, out_dir: str, stem: str,
                    classes: Optional[Sequence[str]] = None, palette: Optional[np.ndarray] = None,
                    topk: int = 5, score_thr: float = 0.5,
                    candidates: Optional[Sequence[int]] = None) -> List[str]:
    """Write ``task``'s prediction of ``sample`` under ``out_dir/task/``; returns the paths.

    Args:
        sample: a ``TaskDataSample`` that ``head`` has predicted.
        head: the task's head (it decides the format: see the module docstring).
        stem: file name without extension.
        classes: class names of the task (names in the json files), or None.
        palette: uint8 [>= num_classes, 3] colours of class maps (default: PASCAL VOC's).
        topk: classes listed in a classification json.
        score_thr: a multi-label class is listed when its score is at least this.
        candidates: the classes a multi-label prediction may list (default: all).
    """
    field = pred_field(head)
    base = osp.join(out_dir, task, stem)
    os.makedirs(osp.dirname(base), exist_ok=True)
    name = (lambda i: classes[i] if classes is not None and i < len(classes) else str(i))
    if field == 'pred_instances':
        return [_write_json(base, instances_json(sample.pred_instances, sample, name))]
    pred = getattr(sample, field).detach().cpu()
    if field == 'pred_score':
        scores, labels = pred.float().topk(min(topk, pred.numel()))
        best = [dict(label=int(i), **{'class': name(int(i))}, score=float(s))
                for s, i in zip(scores, labels)]
        return [_write_json(base, dict(best[0], topk=best))]
    if field == 'pred_scores':
        labels = [int(i) for i in torch.nonzero(pred >= score_thr).flatten()
                  if candidates is None or int(i) in candidates]
        return [_write_json(base, dict(labels=labels, classes=[name(i) for i in labels],
                                       scores=[float(s) for s in pred]))]
    pred = dense_at_original_size(pred, sample, field)
    if field in CLASS_MAPS:
        image = Image.fromarray(pred.numpy().astype(np.uint8)).convert('P')  # indices kept
        image.putpalette((PALETTE if palette is None else np.asarray(palette, np.uint8))
                         .reshape(-1).tolist())
        return [_save_png(image, base)]
    if field == 'pred_depth':
        metres = pred.float().numpy()
        millimetres = np.clip(np.round(metres * DEPTH_PNG_SCALE), 0, 65535).astype(np.uint16)
        np.save(base + '.npy', metres)
        return [_save_png(Image.fromarray(millimetres), base), base + '.npy']
    if field == 'pred_normal':
        rgb = ((pred.permute(1, 2, 0).numpy() + 1) / 2 * 255).round().clip(0, 255)
        return [_save_png(Image.fromarray(rgb.astype(np.uint8)), base)]
    grey = (pred.float().clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    return [_save_png(Image.fromarray(grey), base)]


def instances_json(instances, sample, name) -> dict:
    """``pred_instances`` (bboxes [N, 4] xyxy, scores, labels, masks uint8 [N, H, W] in the
    original image) as ``{height, width, instances: [...]}`` with COCO's bbox and RLE."""
    height, width = sample.ori_shape[:2]
    boxes = instances.bboxes.detach().cpu().double()
    boxes[:, 2:] -= boxes[:, :2]
    masks = instances.masks.cpu().numpy().astype(np.uint8).reshape(-1, height, width)
    rles = encode_masks(masks) if len(masks) else []
    return dict(height=int(height), width=int(width), instances=[
        dict(label=int(label), **{'class': name(int(label))}, score=float(score),
             bbox=[round(v, 2) for v in box], segmentation=rle)
        for label, score, box, rle in zip(instances.labels.tolist(), instances.scores.tolist(),
                                          boxes.tolist(), rles)])


def _write_json(base: str, content: dict) -> str:
    with open(base + '.json', 'w') as f:
        json.dump(content, f, indent=1)
    return base + '.json'


def _save_png(image: Image.Image, base: str) -> str:
    image.save(base + '.png')
    return base + '.png'
