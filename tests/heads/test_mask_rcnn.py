import pytest
import torch
from mmengine.structures import InstanceData

from modzoo.analysis import model_summary
from modzoo.registry import MODELS
from modzoo.structures import Features, TaskDataSample

ANCHORS = ((8, ), (16, ), (32, ), (64, ), (128, ))


def _head_cfg(**kwargs):
    cfg = dict(type='MaskRCNNHead', num_classes=3, in_channels=32, channels=32, box_fc=64,
               anchor_sizes=ANCHORS, box_convs=1, mask_convs=1, rpn_convs=1)
    return {**cfg, **kwargs}


def _head(**kwargs):
    return MODELS.build(_head_cfg(**kwargs))


def _sample(boxes, labels, size=64, **meta):
    masks = torch.zeros(len(boxes), size, size, dtype=torch.uint8)
    for mask, (x1, y1, x2, y2) in zip(masks, boxes):
        mask[y1:y2, x1:x2] = 1
    sample = TaskDataSample(metainfo={'img_shape': (size, size), 'ori_shape': (size, size),
                                      **meta})
    sample.gt_instances = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32).view(-1, 4),
                                       labels=torch.tensor(labels, dtype=torch.long),
                                       masks=masks)
    return sample


def _feats(batch=2, size=64):
    return Features(maps=(torch.randn(batch, 32, size // 16, size // 16), ))


def test_loss_parts_and_training_lowers_it():
    torch.manual_seed(0)
    head = _head()
    feats = _feats()
    samples = [_sample([[8, 8, 40, 30]], [2]), _sample([], [])]  # the second: a negative
    losses = head.loss(feats, samples)
    assert set(losses) == {'loss', 'rpn_cls', 'rpn_bbox', 'rcnn_cls', 'rcnn_bbox', 'mask'}
    parts = sum(v for k, v in losses.items() if k != 'loss')
    assert torch.allclose(losses['loss'].detach(), parts)
    assert not any(v.requires_grad for k, v in losses.items() if k != 'loss')
    head.roi_heads.fg_bg_sampler.batch_size_per_image = 64
    optim = torch.optim.SGD(head.parameters(), lr=0.02, momentum=0.9)
    first = losses['loss'].item()
    for _ in range(8):
        loss = head.loss(feats, samples)['loss']
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert head.loss(feats, samples)['loss'].item() < 0.7 * first


def test_predict_rescales_to_the_original_image():
    torch.manual_seed(0)
    head = _head(roi_cfg=dict(score_thresh=0.0)).eval()
    samples = [_sample([], [], scale_factor=(0.5, 0.25), ori_shape=(256, 128))]
    feats = _feats(1)
    proposals = head.proposals(feats, samples)[0]
    head.predict(feats, samples)
    pred = samples[0].pred_instances
    assert len(pred) == len(proposals) > 0
    assert torch.allclose(pred.bboxes, proposals.bboxes * torch.tensor([2., 4., 2., 4.]))
    assert pred.masks.shape == (len(pred), 256, 128) and pred.masks.dtype == torch.uint8
    assert pred.labels.min() >= 0 and pred.labels.max() < 3


def test_class_agnostic_proposals():
    torch.manual_seed(0)
    head = _head(class_agnostic=True, roi_cfg=dict(score_thresh=0.0, detections_per_img=7))
    assert head.roi_heads.box_predictor.cls_score.out_features == 2  # background + object
    samples = [_sample([[8, 8, 40, 30]], [2]), _sample([[0, 0, 20, 64]], [0])]
    head.loss(_feats(), samples)['loss'].backward()  # labels are ignored
    feats = _feats()
    props = head.proposals(feats, samples)  # also in training mode
    for p in props:
        assert len(p) == 7 and (p.labels == 0).all()
        assert p.mask_logits.shape == (7, 28, 28) and p.embeddings.shape == (7, 64)
    (props[0].embeddings.sum() + props[1].mask_logits.sum()).backward()
    assert head.neck.levels[0][1].weight.grad is not None


def test_bad_config_and_missing_gt():
    with pytest.raises(ValueError, match='anchor_sizes has 3'):
        _head(anchor_sizes=ANCHORS[:3])
    sample = TaskDataSample(metainfo=dict(img_shape=(64, 64), img_path='a.jpg'))
    with pytest.raises(KeyError, match="'gt_instances'.*a.jpg"):
        _head().loss(_feats(1), [sample])


def test_loss_in_eval_mode_is_the_training_loss():
    head = _head().eval()
    samples = [_sample([[8, 8, 40, 30]], [2])]
    feats = _feats(1)
    torch.manual_seed(0)
    in_eval = head.loss(feats, samples)
    assert not head.rpn.training and not head.roi_heads.training  # restored
    torch.manual_seed(0)
    in_train = head.train().loss(feats, samples)
    assert torch.equal(in_eval['loss'], in_train['loss'])


def test_flops_count_the_test_path_per_detection():
    """model_summary runs the detector's test path: each detection adds its mask branch,
    by hand: 3x3 conv 32->32 at 14x14 (1,806,336) + LayerNorm (5 x 32 x 14 x 14 = 31,360)
    + 2x2 deconv to 28x28 (802,816) + 1x1 conv 32->4 at 28x28 (100,352) multiply-adds."""
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='MultiTaskModel',
        backbone=dict(type='ViT', arch=dict(embed_dim=32, depth=2, num_heads=2), img_size=64,
                      patch_size=16, out_indices=(1, )),
        heads=dict(det=_head_cfg(roi_cfg=dict(score_thresh=0.0)))))
    flops = []
    for detections in (7, 14):  # score_thresh 0: every image fills its detections
        model.heads.det.roi_heads.detections_per_img = detections
        flops.append(model_summary(model, (64, 64))['tasks']['det']['gflops'] * 1e9)
    assert flops[1] - flops[0] == pytest.approx(7 * 2_740_864, abs=1)
