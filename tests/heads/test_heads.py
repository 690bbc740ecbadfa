import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from modzoo.heads import (ClsHead, DepthHead, EdgeHead, MultiLabelClsHead, NormalHead, SaliencyHead,
                          SemSegHead)
from modzoo.heads.dense import batch_canvas
from modzoo.heads.losses import (asymmetric_loss, balanced_bce_loss, balanced_cross_entropy,
                                 depth_l1_loss, normal_l1_loss, seg_cross_entropy, stack_gt)
from modzoo.models.backbones.vit import ViT
from modzoo.registry import MODELS
from modzoo.structures import Features, TaskDataSample

LN2 = math.log(2)


def samples(*pad_shapes, **gt):
    """One TaskDataSample per pad shape, each with the gt fields given as callables(h, w)."""
    out = []
    for i, (h, w) in enumerate(pad_shapes):
        sample = TaskDataSample(metainfo=dict(img_path=f'img{i}.png', pad_shape=(h, w),
                                              img_shape=(h, w)))
        for key, make in gt.items():
            setattr(sample, key, make(h, w))
        out.append(sample)
    return out


# ---- losses against hand-computed values -------------------------------------------------

def test_seg_cross_entropy_is_mean_over_valid_pixels():
    logits = torch.tensor([[[[math.log(3), 0., 7.]], [[0., 0., -7.]]]])     # [1, 2, 1, 3]
    target = torch.tensor([[[0, 1, 255]]])
    expected = (math.log(4 / 3) + LN2) / 2
    assert seg_cross_entropy(logits, target).item() == pytest.approx(expected)


def test_dense_losses_are_zero_with_a_graph_when_nothing_is_valid():
    logits = torch.randn(1, 2, 2, 2, requires_grad=True)
    for loss in (seg_cross_entropy(logits, torch.full((1, 2, 2), 255)),
                 balanced_cross_entropy(logits, torch.full((1, 2, 2), 255)),
                 balanced_bce_loss(logits[:, 0], torch.full((1, 2, 2), 255)),
                 depth_l1_loss(logits[:, 0], torch.zeros(1, 2, 2)),
                 normal_l1_loss(logits[:, :1].expand(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))):
        assert loss.item() == 0 and loss.requires_grad


def test_depth_l1_on_valid_pixels():
    pred = torch.tensor([[[1., 2.], [3., 4.]]])
    target = torch.tensor([[[1.5, 0.], [2., 0.]]])
    assert depth_l1_loss(pred, target).item() == pytest.approx((0.5 + 1.0) / 2)


def test_normal_l1_normalises_the_prediction_and_skips_zero_gt():
    pred = torch.tensor([[2., 0., 0.], [0., 0., 0.], [0., 0., 5.]]).T.reshape(1, 3, 1, 3)
    target = torch.tensor([[0., 1., 0.], [0., 0., 0.], [0., 0., 1.]]).T.reshape(1, 3, 1, 3)
    # pixel 0: (2, 0, 0)/2 = (1, 0, 0) vs (0, 1, 0) -> |1| + |-1| = 2; pixel 2: 0
    assert normal_l1_loss(pred, target).item() == pytest.approx((2 + 0) / 2)


def test_balanced_bce_matches_invpt_weights():
    logits = torch.tensor([[[math.log(3), 0., 5.]]])
    target = torch.tensor([[[1, 0, 255]]])
    expected = (0.95 * math.log(4 / 3) + 0.05 * LN2) / 2
    assert balanced_bce_loss(logits, target).item() == pytest.approx(expected)
    # InvPT form: BCE-with-logits (pos_weight 19) over valid pixels, divided by 20
    ref = F.binary_cross_entropy_with_logits(logits[0, 0, :2], target[0, 0, :2].float(),
                                             pos_weight=torch.tensor(19.)) / 20
    assert balanced_bce_loss(logits, target).item() == pytest.approx(ref.item())


def test_balanced_cross_entropy_weights_by_batch_frequencies():
    logits = torch.zeros(1, 2, 1, 4)
    target = torch.tensor([[[1, 0, 0, 255]]])
    # w_pos = 2 negatives / 3 valid; weights (1/3, 2/3); every pixel's CE is ln 2
    expected = (2 / 3 + 1 / 3 + 1 / 3) * LN2 / 3
    assert balanced_cross_entropy(logits, target).item() == pytest.approx(expected)


def test_asymmetric_loss_hand_case_and_bce_limit():
    logits, target = torch.zeros(1, 2), torch.tensor([[1., 0.]])
    expected = (LN2 + 0.45 ** 4 * -math.log(0.55)) / 2
    assert asymmetric_loss(logits, target).item() == pytest.approx(expected)
    logits, target = torch.randn(4, 5), (torch.rand(4, 5) > 0.5).float()
    torch.testing.assert_close(asymmetric_loss(logits, target, gamma_neg=0., clip=0.),
                               F.binary_cross_entropy_with_logits(logits, target))


def test_stack_gt_pads_with_the_field_ignore_value():
    batch = samples((2, 3), (3, 4), gt_sem_seg=lambda h, w: torch.zeros(h, w, dtype=torch.long),
                    gt_normal=lambda h, w: torch.ones(3, h, w))
    seg = stack_gt(batch, 'gt_sem_seg', 'H', size=(3, 4))
    assert seg.shape == (2, 3, 4) and seg[0, 2].tolist() == [255] * 4 and seg[0, 0, 3] == 255
    assert seg[1].eq(0).all()
    normal = stack_gt(batch, 'gt_normal', 'H', size=(3, 4))
    assert normal.shape == (2, 3, 3, 4) and normal[0, :, 2].eq(0).all()
    with pytest.raises(ValueError, match='img1.png is 3x4, larger than the padded batch 2x4'):
        stack_gt(batch, 'gt_sem_seg', 'H', size=(2, 4))
    with pytest.raises(KeyError, match="DepthHead needs 'gt_depth'.*img0.png"):
        stack_gt(batch, 'gt_depth', 'DepthHead', size=(3, 4))


def test_batch_canvas_prefers_batch_input_shape():
    batch = samples((8, 12), (12, 8))
    assert batch_canvas(batch) == (12, 12)
    for sample in batch:
        sample.set_metainfo(dict(batch_input_shape=(16, 16)))
    assert batch_canvas(batch) == (16, 16)


# ---- classification heads ---------------------------------------------------------------

def eye_head(cls=ClsHead, **kwargs):
    head = cls(num_classes=3, in_channels=3, **kwargs)
    with torch.no_grad():
        head.fc.weight.copy_(torch.eye(3))
        head.fc.bias.zero_()
    return head


def test_cls_head_loss_accuracy_and_predict():
    head = eye_head(label_smoothing=0.1)
    cls = torch.tensor([[5., 0., 0.], [0., 5., 0.]])
    batch = samples((4, 4), (4, 4))
    batch[0].gt_label, batch[1].gt_label = torch.tensor(0), torch.tensor(2)
    out = head.loss(Features(maps=(), cls_token=cls), batch)
    target = torch.tensor([0, 2])
    torch.testing.assert_close(out['loss'], F.cross_entropy(cls, target, label_smoothing=0.1))
    assert out['acc'].item() == 50 and not out['acc'].requires_grad
    head.predict(Features(maps=(), cls_token=cls), batch)
    torch.testing.assert_close(batch[1].pred_score, cls[1].softmax(0))
    assert batch[1].pred_label.item() == 1 and batch[1].pred_label.shape == ()


def test_cls_head_pools_the_last_map_without_cls_token():
    head = eye_head()
    maps = (torch.randn(2, 3, 2, 2), torch.randn(2, 3, 4, 4))
    torch.testing.assert_close(head(Features(maps=maps)), maps[1].mean((2, 3)))


def test_cls_head_errors():
    with pytest.raises(KeyError, match="ClsHead needs 'gt_label'.*img0.png"):
        eye_head().loss(Features(maps=(), cls_token=torch.zeros(1, 3)), samples((4, 4)))
    with pytest.raises(ValueError, match='label_smoothing'):
        ClsHead(3, 3, label_smoothing=1.5)


def test_multilabel_head_bce_asl_and_predict():
    cls = torch.randn(2, 3)
    batch = samples((4, 4), (4, 4), gt_labels=lambda h, w: torch.tensor([1., 0., 1.]))
    target = torch.tensor([[1., 0., 1.]] * 2)
    feats = Features(maps=(), cls_token=cls)
    torch.testing.assert_close(eye_head(MultiLabelClsHead).loss(feats, batch)['loss'],
                               F.binary_cross_entropy_with_logits(cls, target))
    asl = eye_head(MultiLabelClsHead, asymmetric=dict(gamma_neg=2., clip=0.1))
    torch.testing.assert_close(asl.loss(feats, batch)['loss'],
                               asymmetric_loss(cls, target, gamma_neg=2., clip=0.1))
    asl.predict(feats, batch)
    torch.testing.assert_close(batch[0].pred_scores, cls[0].sigmoid())
    with pytest.raises(ValueError, match='gamma'):
        MultiLabelClsHead(3, 3, asymmetric=dict(gama_neg=2.))


# ---- dense heads -------------------------------------------------------------------------

DENSE = [
    (SemSegHead, dict(num_classes=4), 'gt_sem_seg',
     lambda h, w: torch.randint(0, 4, (h, w)), 'pred_sem_seg', ()),
    (SemSegHead, dict(num_classes=3, gt_key='gt_parts'), 'gt_parts',
     lambda h, w: torch.full((h, w), 255), 'pred_parts', ()),
    (DepthHead, {}, 'gt_depth', lambda h, w: torch.rand(h, w) * 5, 'pred_depth', ()),
    (NormalHead, {}, 'gt_normal', lambda h, w: F.normalize(torch.randn(3, h, w), dim=0),
     'pred_normal', (3,)),
    (EdgeHead, {}, 'gt_edge', lambda h, w: (torch.rand(h, w) > 0.8).long(), 'pred_edge', ()),
    (SaliencyHead, {}, 'gt_saliency', lambda h, w: (torch.rand(h, w) > 0.5).long(),
     'pred_saliency', ()),
]


@pytest.mark.parametrize('cls, kwargs, gt_key, make_gt, pred_key, lead', DENSE)
def test_dense_head_loss_gradients_and_prediction_shapes(cls, kwargs, gt_key, make_gt,
                                                         pred_key, lead):
    torch.manual_seed(0)
    head = MODELS.build(dict(type=cls.__name__, in_channels=[8, 6], in_index=[0, -1],
                             channels=8, num_convs=2, **kwargs))
    maps = (torch.randn(2, 8, 4, 4, requires_grad=True), torch.randn(2, 6, 2, 2))
    batch = samples((16, 16), (12, 16), **{gt_key: make_gt})
    loss = head.loss(Features(maps=maps), batch)['loss']
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    if gt_key != 'gt_parts':  # all-ignored parts: zero loss, zero gradients
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
        assert maps[0].grad.abs().sum() > 0
    head.eval()
    with torch.no_grad():
        head.predict(Features(maps=maps), batch)
    assert [tuple(s.get(pred_key).shape) for s in batch] == [lead + (16, 16), lead + (12, 16)]
    pred = batch[1].get(pred_key)
    if pred_key == 'pred_depth':
        assert pred.min() >= 0
    if pred_key == 'pred_normal':
        torch.testing.assert_close(pred.norm(dim=0), torch.ones(12, 16))
    if pred_key in ('pred_edge', 'pred_saliency'):
        assert 0 <= pred.min() and pred.max() <= 1
    if pred_key in ('pred_sem_seg', 'pred_parts'):
        assert pred.dtype == torch.long and pred.max() < kwargs['num_classes']


def test_dense_loss_ignores_the_padding():
    head = DepthHead(in_channels=8, channels=8).eval()
    feats = Features(maps=(torch.randn(2, 8, 4, 4),))
    batch = samples((16, 16), (12, 16), gt_depth=lambda h, w: torch.rand(h, w) + 1)
    with torch.no_grad():
        pred = head(feats, (16, 16))[:, 0]
        loss = head.loss(feats, batch)['loss']
    diffs = torch.cat([(pred[0] - batch[0].gt_depth).abs().flatten(),
                       (pred[1, :12] - batch[1].gt_depth).abs().flatten()])
    torch.testing.assert_close(loss, diffs.mean())


def test_depth_head_starts_at_init_depth():
    head = DepthHead(in_channels=8, channels=8, init_depth=4.3).eval()
    torch.nn.init.zeros_(head.conv_out.weight)
    feats = Features(maps=(torch.randn(2, 8, 4, 4),))
    with torch.no_grad():
        torch.testing.assert_close(head(feats, (8, 8)), torch.full((2, 1, 8, 8), 4.3))


def test_dense_head_errors():
    with pytest.raises(ValueError, match='one entry per in_index'):
        DepthHead(in_channels=[8, 8], in_index=-1)
    with pytest.raises(IndexError, match=r'in_index \(2,\) is out of range for 1'):
        DepthHead(in_channels=8, in_index=2)(Features(maps=(torch.randn(1, 8, 2, 2),)), (8, 8))
    with pytest.raises(ValueError, match="gt_key must be 'gt_sem_seg' or 'gt_parts'"):
        SemSegHead(num_classes=3, in_channels=8, gt_key='gt_depth')
    with pytest.raises(ValueError, match='pos_weight'):
        EdgeHead(in_channels=8, pos_weight=1.0)


def test_vit_with_semseg_head_trains_on_a_padded_canvas():
    torch.manual_seed(0)
    vit = ViT(dict(embed_dim=16, depth=2, num_heads=2), img_size=32, patch_size=8,
              out_indices=(0, 1))
    head = SemSegHead(num_classes=3, in_channels=16, in_index=(0, 1), channels=8)
    batch = samples((32, 40), (24, 40), gt_sem_seg=lambda h, w: torch.randint(0, 3, (h, w)))
    loss = head.loss(vit(torch.randn(2, 3, 32, 40)), batch)['loss']
    loss.backward()
    assert vit.pos_embed.grad.abs().sum() > 0
    assert vit.patch_embed.proj.weight.grad.abs().sum() > 0


def test_cls_head_pre_norm_normalises_before_the_classifier():
    head = ClsHead(num_classes=4, in_channels=3, pre_norm=True)
    x = torch.randn(2, 3)
    want = head.fc(F.layer_norm(x, (3, ), head.norm.weight, head.norm.bias))
    torch.testing.assert_close(head(Features(maps=(), cls_token=x)), want)


def test_unpatchify_decoder_is_a_per_token_linear_of_p_by_p_pixels():
    head = NormalHead(in_channels=8, unpatchify=4)
    tokens = torch.randn(2, 8, 3, 5)                                     # [B, D, h, w]
    out = head(Features(maps=(tokens, )), (12, 20))
    weight = head.conv_out.weight[:, :, 0, 0]                            # [C p p, D]
    pixels = torch.einsum('bdhw,od->bhwo', tokens, weight) + head.conv_out.bias
    want = rearrange(pixels, 'b h w (c j k) -> b c (h j) (w k)', j=4, k=4)
    torch.testing.assert_close(out, want)
    assert not hasattr(head, 'projs')
    with pytest.raises(ValueError, match='unpatchify decodes one map'):
        DepthHead(in_channels=8, in_index=(0, 1), unpatchify=4)
