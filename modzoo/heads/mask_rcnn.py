"""Mask R-CNN on a plain ViT (ViTDet): a simple feature pyramid and torchvision's detector parts.

The region proposal network, RoI pooling, box and mask heads, their losses and the box
post-processing are torchvision's (``torchvision.models.detection``); this head builds them,
turns modzoo ``Features`` and ``TaskDataSample``s into their inputs and their outputs into
``InstanceData`` with mmdet's field names.
"""
from collections import OrderedDict
from contextlib import contextmanager
from typing import List, Optional, Sequence

import torch
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from timm.layers import LayerNorm2d
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, paste_masks_in_image
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import MultiScaleRoIAlign

from modzoo.registry import MODELS
from modzoo.structures import Features, TaskDataSample
from .dense import batch_canvas

# torchvision's maskrcnn_resnet50_fpn defaults (also detectron2's and ViTDet's)
RPN_DEFAULTS = dict(fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=256,
                    positive_fraction=0.5, pre_nms_top_n=dict(training=2000, testing=1000),
                    post_nms_top_n=dict(training=2000, testing=1000), nms_thresh=0.7)
ROI_DEFAULTS = dict(fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=512,
                    positive_fraction=0.25, bbox_reg_weights=None, score_thresh=0.05,
                    nms_thresh=0.5, detections_per_img=100)


@contextmanager
def training_mode(module, mode: bool):
    """Run ``module`` with its ``training`` flag set to ``mode``, restored afterwards.

    torchvision's RPN and RoI heads choose between their training path (sampling, losses,
    targets required) and their inference path by that flag alone.
    """
    was = module.training
    module.train(mode)
    try:
        yield module
    finally:
        module.train(was)


@MODELS.register_module()
class MaskRCNNHead(BaseModule):
    """Two-stage instance segmentation head (ViTDet's Mask R-CNN) on torchvision's modules.

    ``feats.maps[-1]`` → ``neck`` (default :class:`SimpleFeaturePyramid`, 5 levels) → RPN
    (``AnchorGenerator`` one size per level × ``aspect_ratios``, ``RPNHead`` with
    ``rpn_convs`` convs) → ``MultiScaleRoIAlign`` 7×7 on all levels but the pooled one →
    box head (``box_convs`` 3×3 convs + LayerNorm, one FC of ``box_fc``; 0 convs gives two FCs,
    torchvision's ``TwoMLPHead`` layout) → ``FastRCNNPredictor`` → 14×14 RoIAlign → mask head
    (4 convs + LayerNorm) → ``MaskRCNNPredictor`` (28×28 logits).

    Class-agnostic mode (``class_agnostic=True``) learns one 'object' class: every gt
    instance counts, labels are ignored, predictions have label 0. ``proposals`` returns the
    top detections per image with their mask logits and RoI feature vectors, the input of
    Uni-Perceiver v2's decoder.

    Args:
        num_classes: object classes C (without background); ignored when class-agnostic.
        in_channels: backbone width D.
        neck: feature pyramid cfg (``in_channels`` and ``out_channels`` are filled in).
        channels: pyramid and head width.
        anchor_sizes: anchor size in pixels per pyramid level (one tuple per level).
        aspect_ratios: anchor aspect ratios (h / w), the same on every level.
        class_agnostic: one foreground class.
        rpn_convs / box_convs / box_fc / mask_convs: head depths and widths.
        rpn_cfg / roi_cfg: overrides of ``RPN_DEFAULTS`` / ``ROI_DEFAULTS`` (torchvision's
            argument names; ``roi_cfg`` also holds the test settings ``score_thresh``,
            ``nms_thresh``, ``detections_per_img``).
        mask_thr: probability above which a pasted mask pixel is foreground.
    """
    gt_key = 'gt_instances'
    pred_key = 'pred_instances'

    def __init__(self, num_classes: int, in_channels: int, neck: Optional[dict] = None,
                 channels: int = 256,
                 anchor_sizes: Sequence[Sequence[int]] = ((32, ), (64, ), (128, ), (256, ),
                                                          (512, )),
                 aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0), class_agnostic: bool = False,
                 rpn_convs: int = 2, box_convs: int = 4, box_fc: int = 1024, mask_convs: int = 4,
                 rpn_cfg: Optional[dict] = None, roi_cfg: Optional[dict] = None,
                 mask_thr: float = 0.5, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.class_agnostic = class_agnostic
        self.num_classes = 1 if class_agnostic else num_classes
        self.mask_thr = mask_thr
        neck = dict(neck or dict(type='SimpleFeaturePyramid'))
        neck.update(in_channels=in_channels, out_channels=channels)
        self.neck = MODELS.build(neck)
        num_levels = len(self.neck.scale_factors) + int(self.neck.top_pool)
        if len(anchor_sizes) != num_levels:
            raise ValueError(f'MaskRCNNHead: anchor_sizes has {len(anchor_sizes)} entries but '
                             f'the pyramid has {num_levels} levels (one size tuple per level)')
        self.level_names = [str(i) for i in range(num_levels)]
        roi_levels = self.level_names[:len(self.neck.scale_factors)]

        anchors = AnchorGenerator(tuple(tuple(s) for s in anchor_sizes),
                                  (tuple(aspect_ratios), ) * num_levels)
        rpn_head = RPNHead(channels, anchors.num_anchors_per_location()[0], conv_depth=rpn_convs)
        self.rpn = RegionProposalNetwork(anchors, rpn_head, **{**RPN_DEFAULTS, **(rpn_cfg or {})})

        if box_convs:
            box_head = FastRCNNConvFCHead((channels, 7, 7), [channels] * box_convs, [box_fc],
                                          norm_layer=LayerNorm2d)
        else:
            box_head = FastRCNNConvFCHead((channels, 7, 7), [], [box_fc, box_fc])
        self.roi_heads = RoIHeads(
            box_roi_pool=MultiScaleRoIAlign(roi_levels, output_size=7, sampling_ratio=2),
            box_head=box_head,
            box_predictor=FastRCNNPredictor(box_fc, self.num_classes + 1),
            mask_roi_pool=MultiScaleRoIAlign(roi_levels, output_size=14, sampling_ratio=2),
            mask_head=MaskRCNNHeads(channels, [channels] * mask_convs, 1,
                                    norm_layer=LayerNorm2d),
            mask_predictor=MaskRCNNPredictor(channels, channels, self.num_classes + 1),
            **{**ROI_DEFAULTS, **(roi_cfg or {})})

    def _pyramid(self, feats: Features, data_samples: List[TaskDataSample]):
        """(pyramid {level name: [B, channels, h_l, w_l]}, ImageList of the padded batch,
        image sizes [(h, w)] of the valid regions)."""
        maps = self.neck(feats).maps
        pyramid = OrderedDict(zip(self.level_names, maps))
        h, w = batch_canvas(data_samples)
        sizes = [tuple(s.metainfo.get('img_shape', (h, w))[:2]) for s in data_samples]
        # the RPN reads only the padded size, dtype and device of the batch tensor
        images = ImageList(maps[0].new_empty((len(data_samples), 0, h, w)), sizes)
        return pyramid, images, sizes

    def _targets(self, data_samples: List[TaskDataSample], device) -> List[dict]:
        targets = []
        for sample in data_samples:
            if self.gt_key not in sample:
                raise KeyError(f"MaskRCNNHead needs '{self.gt_key}' in every data sample; "
                               f"{sample.metainfo.get('img_path', 'a data sample')} has none.")
            gt = sample.gt_instances
            labels = gt.labels.to(device) + 1  # torchvision's class 0 is the background
            if self.class_agnostic:
                labels = torch.ones_like(labels)
            targets.append(dict(boxes=gt.bboxes.to(device).float(), labels=labels,
                                masks=gt.masks.to(device)))
        return targets

    def loss(self, feats: Features, data_samples: List[TaskDataSample]) -> dict:
        """``loss``: the sum of torchvision's five Mask R-CNN losses, which are also returned
        (detached, for the log) as ``rpn_cls``, ``rpn_bbox``, ``rcnn_cls``, ``rcnn_bbox``,
        ``mask``. Images without instances train as negatives. The RPN and RoI heads take
        their training path here also in eval mode (validation losses)."""
        pyramid, images, sizes = self._pyramid(feats, data_samples)
        targets = self._targets(data_samples, images.tensors.device)
        with training_mode(self.rpn, True), training_mode(self.roi_heads, True):
            proposals, rpn_losses = self.rpn(images, pyramid, targets)
            _, roi_losses = self.roi_heads(pyramid, proposals, sizes, targets)
        parts = dict(rpn_cls=rpn_losses['loss_objectness'],
                     rpn_bbox=rpn_losses['loss_rpn_box_reg'],
                     rcnn_cls=roi_losses['loss_classifier'],
                     rcnn_bbox=roi_losses['loss_box_reg'], mask=roi_losses['loss_mask'])
        losses = dict(loss=sum(parts.values()))
        losses.update((name, value.detach()) for name, value in parts.items())
        return losses

    def proposals(self, feats: Features, data_samples: List[TaskDataSample],
                  with_embeddings: bool = True) -> List[InstanceData]:
        """Detections of every image, in the coordinates of the (resized) input image.

        Per image, up to ``roi_cfg['detections_per_img']`` (N) boxes after score threshold
        and per-class NMS, as ``InstanceData`` with ``bboxes`` [N, 4] xyxy, ``scores`` [N],
        ``labels`` [N] (0-based; 0 when class-agnostic), ``mask_logits`` [N, 28, 28] (of
        the box's class) and, ``with_embeddings``, ``embeddings`` [N, box_fc] (the box
        head's feature vector of the final box). The RPN runs with its test settings, also
        in training mode; gradients flow into ``mask_logits`` and ``embeddings``.
        """
        pyramid, images, sizes = self._pyramid(feats, data_samples)
        with training_mode(self.rpn, False):  # proposals without targets
            boxes, _ = self.rpn(images, pyramid)
        heads = self.roi_heads
        box_feats = heads.box_head(heads.box_roi_pool(pyramid, boxes, sizes))
        logits, deltas = heads.box_predictor(box_feats)
        boxes, scores, labels = heads.postprocess_detections(logits, deltas, boxes, sizes)
        masks = heads.mask_predictor(heads.mask_head(heads.mask_roi_pool(pyramid, boxes, sizes)))
        masks = masks[torch.arange(len(masks)), torch.cat(labels)]
        if with_embeddings:
            embeddings = heads.box_head(heads.box_roi_pool(pyramid, boxes, sizes))
        results, start = [], 0
        for img_boxes, img_scores, img_labels in zip(boxes, scores, labels):
            end = start + len(img_boxes)
            result = InstanceData(bboxes=img_boxes, scores=img_scores, labels=img_labels - 1,
                                  mask_logits=masks[start:end])
            if with_embeddings:
                result.embeddings = embeddings[start:end]
            results.append(result)
            start = end
        return results

    @torch.no_grad()
    def predict(self, feats: Features,
                data_samples: List[TaskDataSample]) -> List[TaskDataSample]:
        """Writes ``pred_instances`` (bboxes [N, 4] xyxy, scores [N], labels [N], masks uint8
        [N, H, W]) in the original image's pixels (``ori_shape``; boxes divided by the
        sample's ``scale_factor``) into every sample."""
        for sample, det in zip(data_samples, self.proposals(feats, data_samples, False)):
            sample.pred_instances = in_original_image(det, sample, self.mask_thr)
        return data_samples


def in_original_image(det: InstanceData, sample: TaskDataSample,
                      mask_thr: float = 0.5) -> InstanceData:
    """Detections in input-image pixels (``bboxes``, ``scores``, ``labels``, ``mask_logits``
    [N, 28, 28] in the box frame) -> ``InstanceData`` in the original image's pixels
    (``ori_shape``; boxes divided by the sample's ``scale_factor`` and clipped) with
    ``masks`` uint8 [N, H, W] pasted and thresholded at ``mask_thr``."""
    w_scale, h_scale = sample.metainfo.get('scale_factor', (1.0, 1.0))
    h, w = sample.metainfo.get('ori_shape', sample.metainfo.get('img_shape'))[:2]
    boxes = det.bboxes / det.bboxes.new_tensor([w_scale, h_scale, w_scale, h_scale])
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    probs = paste_masks_in_image(det.mask_logits.sigmoid()[:, None], boxes, (h, w))
    return InstanceData(bboxes=boxes, scores=det.scores, labels=det.labels,
                        masks=(probs[:, 0] > mask_thr).to(torch.uint8))
