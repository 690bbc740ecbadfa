"""MULTI-LANE: selectors, prefix prompts, the prompted ViT backbone, the pathway head, the model."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import BaseDataElement

from modzoo.heads.pathway_head import PathwayHead
from modzoo.models.backbones.prompted_vit import MultiLaneViT
from modzoo.models.layers.summarizer import summarize
from modzoo.models.multilane import MultiLane

TINY_VIT = dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2)
CLASS_MASK = [[0, 1], [2, 3, 4], [5]]


def tiny_backbone(**kwargs):
    cfg = dict(arch='vit_tiny_patch16_224', vit_cfg=TINY_VIT, num_tasks=3, num_selectors=4,
               num_prompts=3, num_prompt_layers=2)
    return MultiLaneViT(**{**cfg, **kwargs})


def tiny_model(mode='concat', multi_label=True, **backbone):
    torch.manual_seed(0)
    model = MultiLane(backbone=dict(type='MultiLaneViT', **{**dict(
        arch='vit_tiny_patch16_224', vit_cfg=TINY_VIT, num_tasks=3, num_selectors=4,
        num_prompts=3, num_prompt_layers=2), **backbone}),
        head=dict(type='PathwayHead', num_classes=6, class_mask=CLASS_MASK, mode=mode,
                  multi_label=multi_label))
    randomize_pathways(model.backbone)
    return model


def randomize_pathways(backbone):
    """Give every task distinct, far-from-uniform selectors and prompts."""
    with torch.no_grad():
        backbone.selectors.tokens.normal_()
        for prompts in backbone.prompts:
            prompts.kv.normal_()


def images(batch=2):
    return torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def reference_pathway(backbone, x, task):
    """The official algorithm for one pathway, written plainly: tokens [B, 1+S, D], every
    token asks a query, the frozen stream recomputed, manual softmax attention."""
    vit = backbone.vit
    x = vit._pos_embed(vit.patch_embed(x))
    batch, dim = x.shape[0], x.shape[-1]
    tokens = torch.cat((vit.cls_token.expand(batch, -1, -1),
                        backbone.selectors.tokens[task].expand(batch, -1, -1)), dim=1)
    for i, blk in enumerate(vit.blocks):
        heads, head_dim = blk.attn.num_heads, blk.attn.head_dim
        x_normed, tokens_normed = blk.norm1(x), blk.norm1(tokens)
        queries = tokens_normed
        if backbone.drop_and_replace or i == 0:
            sel_normed = tokens_normed[:, 1:]
            weights = (sel_normed @ x_normed.transpose(1, 2) / dim ** 0.5).softmax(dim=-1)
            queries = torch.cat((tokens_normed[:, :1], weights @ x_normed), dim=1)
        length = queries.shape[1]
        q, k, v = blk.attn.qkv(queries).reshape(batch, length, 3, heads, head_dim).permute(
            2, 0, 3, 1, 4)
        if i < len(backbone.prompts):
            prompt_k, prompt_v = backbone.prompts[i].kv[:, task].transpose(1, 2)  # [H, P, Dh]
            k = torch.cat((prompt_k.expand(batch, -1, -1, -1), k), dim=2)
            v = torch.cat((prompt_v.expand(batch, -1, -1, -1), v), dim=2)
        out = ((q @ k.transpose(-2, -1)) * head_dim ** -0.5).softmax(dim=-1) @ v
        out = blk.attn.proj(out.transpose(1, 2).reshape(batch, length, dim))
        if backbone.drop_and_replace:
            kept = sel_normed if backbone.replace_normed else torch.zeros_like(sel_normed)
            out = torch.cat((out[:, :1], kept), dim=1)
        x = x + blk.attn(x_normed)
        x = x + blk.mlp(blk.norm2(x))
        tokens = tokens + out
        tokens = tokens + blk.mlp(blk.norm2(tokens))
    return vit.norm(tokens[:, 0])


def test_summarize_is_a_softmax_average_of_detached_tokens():
    queries = torch.randn(3, 4, 8, requires_grad=True)             # [T, S, D]
    tokens = torch.randn(2, 5, 8, requires_grad=True)              # [B, N, D]
    summary, weights = summarize(queries, tokens)
    assert summary.shape == (3, 2, 4, 8) and weights.shape == (3, 2, 4, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, 4))
    expected = torch.softmax(queries[1, 2] @ tokens[0].T / 8 ** 0.5, dim=-1) @ tokens[0]
    torch.testing.assert_close(summary[1, 0, 2], expected)
    summary.sum().backward()
    assert tokens.grad is None and queries.grad.abs().sum() > 0


def test_frozen_stream_is_the_plain_vit_and_ignores_the_pathways():
    backbone = tiny_backbone().eval()
    x = images()
    frozen_one, _ = backbone.forward_tokens(x, [1])
    frozen_all, pathways = backbone.forward_tokens(x, [0, 1, 2])
    torch.testing.assert_close(frozen_one, frozen_all, rtol=0, atol=0)
    torch.testing.assert_close(frozen_all, backbone.vit.forward_features(x))
    assert not frozen_all.requires_grad and pathways.shape == (2, 3, 32)


@pytest.mark.parametrize('drop_and_replace,replace_normed',
                         [(True, True), (True, False), (False, True)])
def test_batched_pathways_equal_a_per_task_loop(drop_and_replace, replace_normed):
    torch.manual_seed(0)
    backbone = tiny_backbone(drop_and_replace=drop_and_replace,
                             replace_normed=replace_normed).eval()
    randomize_pathways(backbone)
    x = images(3)
    with torch.no_grad():
        batched = backbone.forward_tokens(x, [2, 0, 1])[1]           # [B, T, D]
        for column, task in enumerate([2, 0, 1]):
            torch.testing.assert_close(batched[:, column], reference_pathway(backbone, x, task),
                                       rtol=0, atol=1e-5)


def test_backbone_features_layout():
    backbone = tiny_backbone().eval()
    feats = backbone(images(), task=[0, 2])
    assert feats.maps[0].shape == (2, 32, 4, 4)
    assert feats.cls_token.shape == (2, 3, 32)
    frozen, pathways = backbone.forward_tokens(images(), [0, 2])
    torch.testing.assert_close(feats.cls_token[:, 0], frozen[:, 0])
    torch.testing.assert_close(feats.cls_token[:, 1:], pathways)


def test_only_selectors_prompts_and_head_train():
    model = tiny_model(mode='task')
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {'backbone.selectors.tokens', 'backbone.prompts.0.kv',
                         'backbone.prompts.1.kv', 'head.fc.weight', 'head.fc.bias', 'head.keys'}


def test_concat_head_scores_each_class_by_its_own_pathway():
    model = tiny_model().eval()
    model.backbone.next_task()
    x = images()
    with torch.no_grad():
        logits = model(x)                                            # tasks 0, 1
        pathways = F.normalize(model.forward_pathways(x), dim=-1)    # [B, 2, D]
        per_pathway = model.head.fc(pathways)                        # [B, 2, C]
    torch.testing.assert_close(logits[:, :2], per_pathway[:, 0, :2])
    torch.testing.assert_close(logits[:, 2:5], per_pathway[:, 1, 2:5])
    assert torch.all(logits[:, 5] == 0)                              # task 2 not seen yet


def test_next_task_keeps_the_logits_of_earlier_tasks():
    model = tiny_model().eval()
    x = images()
    with torch.no_grad():
        before = model(x)
        model.next_task()
        model.backbone.selectors.tokens[1].normal_()          # as if task 1 had trained
        for prompts in model.backbone.prompts:
            prompts.kv[:, 1].normal_()
        after = model(x)
    torch.testing.assert_close(after[:, :2], before[:, :2], rtol=0, atol=1e-6)
    assert torch.all(before[:, 2:] == 0) and torch.all(after[:, 2:5] != 0)


def test_next_task_starts_from_the_previous_pathway():
    model = tiny_model()
    backbone = model.backbone
    model.next_task()
    assert model.task_id == 1
    torch.testing.assert_close(backbone.selectors.tokens[1], backbone.selectors.tokens[0])
    with torch.no_grad():
        backbone.selectors.tokens[1] += 1.
        backbone.prompts[0].kv[:, 1] += 1.
    model.next_task()
    torch.testing.assert_close(backbone.selectors.tokens[2], backbone.selectors.tokens[1])
    for prompts in backbone.prompts:
        torch.testing.assert_close(prompts.kv[:, 2], prompts.kv[:, 1])
    assert not torch.equal(backbone.selectors.tokens[2], backbone.selectors.tokens[0])
    with pytest.raises(RuntimeError, match='num_tasks=3'):
        model.next_task()


def multi_hot(rows):
    samples = []
    for row in rows:
        sample = BaseDataElement()
        sample.gt_labels = torch.tensor(row, dtype=torch.float32)
        samples.append(sample)
    return samples


def test_loss_trains_only_the_current_pathway_and_its_classes():
    model = tiny_model()
    model.next_task()
    model.train()
    losses = model(images(), multi_hot([[1, 0, 1, 0, 1, 1], [0, 1, 0, 1, 0, 0]]), mode='loss')
    losses['loss_cls'].backward()
    weight_grad = model.head.fc.weight.grad.abs().sum(dim=1)
    assert torch.all(weight_grad[[0, 1, 5]] == 0) and torch.all(weight_grad[2:5] > 0)
    selector_grad = model.backbone.selectors.tokens.grad.abs().sum(dim=(1, 2))
    assert selector_grad[1] > 0 and selector_grad[0] == 0 and selector_grad[2] == 0
    prompt_grad = model.backbone.prompts[0].kv.grad.abs().sum(dim=(0, 2, 3, 4))
    assert prompt_grad[1] > 0 and prompt_grad[0] == 0 and prompt_grad[2] == 0


def test_loss_is_the_official_masked_bce():
    model = tiny_model()
    targets = [[1, 0, 1, 0, 1, 1], [0, 1, 0, 1, 0, 0]]
    with torch.no_grad():
        loss = model(images(), multi_hot(targets), mode='loss')['loss_cls']
        feats = model.backbone(images(), [0])
        logits = model.head.fc(F.normalize(feats.cls_token[:, 1], dim=-1))
    mask = torch.tensor([1., 1., 0., 0., 0., 0.])
    expected = F.binary_cross_entropy_with_logits(logits * mask, torch.tensor(targets) * mask)
    torch.testing.assert_close(loss, expected)


def test_predict_sets_multilabel_scores():
    model = tiny_model().eval()
    with torch.no_grad():
        samples = model(images(), multi_hot([[1] * 6, [0] * 6]), mode='predict')
    scores = torch.stack([s.pred_scores for s in samples])
    assert scores.shape == (2, 6)
    torch.testing.assert_close(scores[:, 2:], torch.full((2, 4), 0.5))   # unseen classes
    torch.testing.assert_close(scores[:, :2], model(images())[:, :2].sigmoid())


def one_class(labels):
    samples = []
    for label in labels:
        sample = BaseDataElement()
        sample.gt_label = torch.tensor(label)
        samples.append(sample)
    return samples


def test_single_label_variant_is_cross_entropy_over_the_task_classes():
    model = tiny_model(multi_label=False)
    model.next_task()   # training task 1 (classes 2-4); task 0 (classes 0-1) seen
    loss = model(images(), one_class([2, 4]), mode='loss')['loss_cls']
    with torch.no_grad():
        pathways = F.normalize(model.backbone(images()).cls_token[:, 1:], dim=-1)
        logits = model.head.fc(pathways)                                    # [B, 2, C]
    torch.testing.assert_close(loss.detach(),
                               F.cross_entropy(logits[:, 1, 2:5], torch.tensor([0, 2])))
    loss.backward()
    assert model.head.fc.weight.grad[[0, 1, 5]].abs().sum() == 0   # other tasks' classes

    model.eval()
    with torch.no_grad():
        samples = model(images(), one_class([1, 3]), mode='predict')
    seen = torch.cat((logits[:, 0, :2], logits[:, 1, 2:5]), dim=1)         # own pathways
    scores = torch.stack([s.pred_score for s in samples])
    torch.testing.assert_close(scores[:, :5], seen.softmax(dim=1))
    assert torch.all(scores[:, 5] == 0)   # unseen class
    assert [int(s.pred_label) for s in samples] == seen.argmax(dim=1).tolist()


def test_task_identifier_head_picks_the_closest_key():
    model = tiny_model(mode='task').eval()
    model.next_task()
    model.next_task()
    x = images(3)
    with torch.no_grad():
        model.head.keys.normal_()
        feats = model.backbone(x)
        logits = model(x)
    frozen_cls, pathways = feats.cls_token[:, 0], F.normalize(feats.cls_token[:, 1:], dim=-1)
    cos = F.normalize(frozen_cls, dim=-1) @ F.normalize(model.head.keys, dim=-1).T   # [B, 3]
    choice = cos.argmax(dim=1)
    expected = model.head.fc(pathways[torch.arange(3), choice])
    torch.testing.assert_close(logits, expected)

    model.train()
    losses = model(x, multi_hot([[0] * 6] * 3), mode='loss')
    torch.testing.assert_close(losses['loss_identifier'], -cos[:, 2].mean())
    losses['loss_identifier'].backward()
    assert model.head.keys.grad[2].abs().sum() > 0 and model.head.keys.grad[:2].abs().sum() == 0


def test_params_per_task_vit_b16_coco():
    with torch.device('meta'):
        backbone = MultiLaneViT(arch='vit_base_patch16_224', num_tasks=8, num_selectors=20,
                                num_prompts=20, num_prompt_layers=5)
        head = PathwayHead(num_classes=80, in_channels=768, mode='task',
                           class_mask=[list(range(10 * t, 10 * t + 10)) for t in range(8)])
    assert backbone.params_per_task() == 168_960                    # 20*768 + 5*2*20*768
    assert head.params_per_task() == 768


def test_init_weights_keeps_the_vit_weights():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.backbone.vit.state_dict().items()}
    model.init_weights()
    for key, value in model.backbone.vit.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_bad_configurations_raise_clear_errors():
    backbone = tiny_backbone()
    with pytest.raises(ValueError, match='task=\\[3\\], expected .* in 0..2'):
        backbone.forward_tokens(images(), [3])
    with pytest.raises(TypeError, match="task='coco'"):
        backbone(images(), task='coco')
    with pytest.raises(ValueError, match='num_prompt_layers=4'):
        tiny_backbone(num_prompt_layers=4)
    with pytest.raises(ValueError, match="mode='both'"):
        PathwayHead(num_classes=6, in_channels=32, class_mask=CLASS_MASK, mode='both')
    with pytest.raises(ValueError, match='classes \\[6\\]'):
        PathwayHead(num_classes=6, in_channels=32, class_mask=[[0, 6]])
    with pytest.raises(ValueError, match='2 tasks but backbone.num_tasks=3'):
        MultiLane(backbone=dict(type='MultiLaneViT', arch='vit_tiny_patch16_224',
                                vit_cfg=TINY_VIT, num_tasks=3, num_prompt_layers=1),
                  head=dict(type='PathwayHead', num_classes=6, class_mask=[[0], [1]]))
