import pytest
import torch
from torch import nn

from modzoo.models.multi_task_model import MultiTaskModel
from modzoo.registry import MODELS
from modzoo.structures import Features, TaskDataSample


@MODELS.register_module(force=True)
class ToyBackbone(nn.Module):
    """Counts its calls; optionally task-conditioned with an aux loss."""

    def __init__(self, task_conditioned=False):
        super().__init__()
        self.task_conditioned = task_conditioned
        self.proj = nn.Conv2d(3, 4, 1)
        self.calls = []

    def forward(self, x, task=None):
        self.calls.append(task)
        aux = {'loss_moe_toy': x.new_tensor(1.0)} if self.task_conditioned else None
        y = self.proj(x)
        return Features(maps=(y,), cls_token=y.mean((2, 3)), aux_losses=aux)


@MODELS.register_module(force=True)
class ToyHead(nn.Module):
    gt_key = 'gt_label'

    def __init__(self, offset=0.0):
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.offset = offset

    def loss(self, feats, samples):
        logits = self.fc(feats.cls_token)
        target = torch.stack([s.gt_label for s in samples])
        return dict(loss=nn.functional.cross_entropy(logits, target) + self.offset,
                    acc=(logits.argmax(1) == target).float().mean())

    def predict(self, feats, samples):
        for s, score in zip(samples, self.fc(feats.cls_token).softmax(1)):
            s.pred_score = score
        return samples


def samples(tasks_per_sample):
    out = []
    for tasks in tasks_per_sample:
        s = TaskDataSample(metainfo=dict(tasks=tasks))
        s.gt_label = torch.tensor(1)
        out.append(s)
    return out


def build(task_conditioned=False, **kw):
    return MultiTaskModel(backbone=dict(type='ToyBackbone', task_conditioned=task_conditioned),
                          heads=dict(a=dict(type='ToyHead'), b=dict(type='ToyHead', offset=10.)),
                          **kw)


def test_loss_keys_weights_and_single_backbone_run():
    model = build(loss_weights=dict(b=0.5))
    model.heads['b'].fc.load_state_dict(model.heads['a'].fc.state_dict())
    x = torch.randn(3, 3, 4, 4)
    losses = model(x, samples([('a', 'b')] * 3), mode='loss')
    assert set(losses) == {'loss_a', 'loss_b', 'a_acc', 'b_acc'}
    assert model.backbone.calls == [None]  # shared backbone runs once for both tasks
    # b = 0.5 * (CE + 10)
    ce = losses['loss_a']
    assert torch.allclose(losses['loss_b'], 0.5 * (ce + 10.0), atol=1e-6)


def test_task_conditioned_backbone_runs_per_task_and_sums_aux():
    model = build(task_conditioned=True)
    losses = model(torch.randn(2, 3, 4, 4), samples([('a', 'b')] * 2), mode='loss')
    assert model.backbone.calls == ['a', 'b']
    assert losses['loss_moe_toy'].item() == 2.0


def test_mixed_batch_is_grouped_and_predict_fills_each_task():
    model = build()
    x = torch.randn(3, 3, 4, 4)
    data = samples([('a',), ('b',), ('a',)])
    out = model(x, data, mode='predict')
    assert all(s.pred_score.shape == (2,) for s in out)
    assert model.backbone.calls == [None, None]  # one run per group
    # each group is predicted on its own rows
    expected = model.heads['a'].fc(model.backbone.proj(x[[0, 2]]).mean((2, 3))).softmax(1)
    assert torch.allclose(out[2].pred_score, expected[1], atol=1e-6)


def test_errors_name_the_problem():
    with pytest.raises(KeyError, match="no head for them"):
        build()(torch.randn(1, 3, 4, 4), samples([('c',)]), mode='loss')
    with pytest.raises(KeyError, match='loss_weights names tasks without a head'):
        build(loss_weights=dict(z=1.0))
    with pytest.raises(ValueError, match='has no `tasks`'):
        build()(torch.randn(1, 3, 4, 4), [TaskDataSample()], mode='loss')
