"""TaskExpertNeck: gates, memory semantics, update rules, backbones it works on, errors."""
import math

import pytest
import torch
import torch.nn.functional as F

from modzoo.models.multi_task_model import MultiTaskModel
from modzoo.models.necks.taskexpert import MemorialMoE, TaskExpertNeck, TaskGate
from modzoo.structures import Features, TaskDataSample

TASKS = ('semseg', 'depth')


def neck(**kwargs):
    cfg = dict(tasks=TASKS, in_channels=8, in_index=(0, 1, 2), channels=6, num_experts=3)
    cfg.update(kwargs)
    return TaskExpertNeck(**cfg).eval()


def features(sizes=((8, 4, 4), ) * 3, batch=2):
    """Features with one map [batch, C, h, w] per (C, h, w) of ``sizes``."""
    return Features(maps=tuple(torch.randn(batch, *size) for size in sizes),
                    cls_token=torch.randn(batch, 5))


def record(modules, store, what='output'):
    """Forward hooks appending each module's (args, output) or output to ``store``."""
    def hook(module, args, output):
        store.append((module, args, output) if what == 'all' else (module, output))
    return [m.register_forward_hook(hook) for m in modules]


@pytest.mark.parametrize('expert_type', ['linear', 'conv'])
@pytest.mark.parametrize('gate_input', ['tokens', 'tokens+memory'])
def test_gate_weights_sum_to_one_per_token(expert_type, gate_input):
    model = neck(expert_type=expert_type, gate_input=gate_input)
    gates = []
    record([m for m in model.modules() if isinstance(m, TaskGate)], gates)
    model(features(), TASKS)
    assert len(gates) == 3 * len(TASKS)  # one gate per task and tapped layer
    for gate, weights in gates:
        assert weights.shape == (2, 3 + 1, 4, 4)  # E experts + the memory, per token
        assert (weights >= 0).all()
        torch.testing.assert_close(weights.sum(1), torch.ones(2, 4, 4))
    # each gate reads the tokens, plus the task's memory with 'tokens+memory'
    gate = model.layers[1].gates['depth']
    assert gate.fc.in_channels == 8 + (6 if gate_input == 'tokens+memory' else 0)


@pytest.mark.parametrize('sizes', [((8, 4, 4), ) * 3, ((8, 8, 8), (8, 4, 4), (8, 2, 2))])
def test_a_layers_memory_write_is_what_the_next_layer_reads(sizes):
    model = neck(memory_update='residual')
    calls = []
    record(model.layers, calls, what='all')
    out = model(features(sizes), TASKS)
    assert [layer for layer, _, _ in calls] == list(model.layers)
    first_read = calls[0][1][1]
    for task in TASKS:
        assert torch.equal(first_read[task], torch.zeros(2, 6, *sizes[0][1:]))
    for (_, _, written), (_, (x, read, _), _) in zip(calls, calls[1:]):
        for task in TASKS:
            expected = written[task]
            if expected.shape[-2:] != x.shape[-2:]:  # a pyramid: the memory is resized
                expected = F.interpolate(expected, size=x.shape[-2:], mode='bilinear',
                                         align_corners=False)
            torch.testing.assert_close(read[task], expected, rtol=0, atol=0)
    # the heads get the last layer's write
    for task in TASKS:
        assert out[task].maps == (calls[-1][2][task], )


def hand_layer(rule, momentum=0.5):
    """One MMoE, 1 input channel, D = 1, E = 2 bias-free linear experts f_e = w_e x with
    w = (1, 3) and a gate whose softmax weights are (1/4, 1/4, 1/2) for every token."""
    layer = MemorialMoE(('t', ), in_channels=1, channels=1, num_experts=2, expert_type='linear',
                        gate_input='tokens', memory_update=rule, momentum=momentum,
                        norm_cfg=None, act_cfg=None, layer=0)
    with torch.no_grad():
        layer.experts.proj.conv.weight.copy_(torch.tensor([1., 3.]).view(2, 1, 1, 1))
        layer.experts.proj.conv.bias.zero_()
        layer.gates['t'].fc.weight.zero_()
        layer.gates['t'].fc.bias.copy_(torch.tensor([0., 0., math.log(2)]))
    return layer


@pytest.mark.parametrize('rule, expected', [
    # assembled a = 1/4 * (1 * 2) + 1/4 * (3 * 2) + 1/2 * 10 = 7
    ('gated', 7.0),              # m <- a
    ('residual', 17.0),          # m <- m + a
    ('momentum', 0.8 * 10 + 0.2 * 7),  # m <- 0.8 m + 0.2 a
])
def test_memory_update_rules_by_hand(rule, expected):
    layer = hand_layer(rule, momentum=0.8)
    x, memory = torch.full((1, 1, 1, 1), 2.0), torch.full((1, 1, 1, 1), 10.0)
    written = layer(x, dict(t=memory), ('t', ))['t']
    torch.testing.assert_close(written, torch.full((1, 1, 1, 1), expected))


def test_the_memory_expert_gets_its_gradient_through_the_gate():
    layer = hand_layer('gated')
    memory = torch.full((1, 1, 1, 1), 10.0, requires_grad=True)
    layer(torch.full((1, 1, 1, 1), 2.0), dict(t=memory), ('t', ))['t'].sum().backward()
    torch.testing.assert_close(memory.grad, torch.full((1, 1, 1, 1), 0.5))  # its gate weight


def test_outputs_on_a_pyramid_and_gradients_reach_every_used_gate():
    model = neck(in_channels=(4, 8, 16), channels=5).train()
    feats = features(((4, 8, 8), (8, 4, 4), (16, 2, 2)))
    out = model(feats, ('depth', ))
    assert set(out) == {'depth'}
    assert out['depth'].maps[0].shape == (2, 5, 2, 2)
    assert out['depth'].cls_token is feats.cls_token
    assert out['depth'].aux_losses is None
    out['depth'].maps[0].square().mean().backward()
    for layer in model.layers:
        assert layer.experts.proj.conv.weight.grad.abs().sum() > 0
        assert layer.gates['depth'].fc.weight.grad.abs().sum() > 0
        assert layer.gates['semseg'].fc.weight.grad is None  # its task was not asked for


def test_errors_name_what_is_wrong():
    with pytest.raises(KeyError, match=r"no gate for task\(s\) \['parts'\].*'semseg', 'depth'"):
        neck()(features(), ('semseg', 'parts'))
    with pytest.raises(ValueError, match='expert_type must be one of'):
        neck(expert_type='mlp')
    with pytest.raises(ValueError, match='gate_input must be one of'):
        neck(gate_input='memory')
    with pytest.raises(ValueError, match='memory_update must be one of'):
        neck(memory_update='lstm')
    with pytest.raises(ValueError, match=r'momentum must be in \[0, 1\)'):
        neck(memory_update='momentum', momentum=1.0)
    with pytest.raises(ValueError, match='one entry per in_index'):
        neck(in_channels=(8, 8))
    with pytest.raises(ValueError, match='tasks must be distinct'):
        neck(tasks=('a', 'a'))
    with pytest.raises(ValueError, match='backbone map 1 has 8 channels, in_channels says 16'):
        neck(in_channels=(8, 16, 8))(features(), TASKS)
    with pytest.raises(IndexError, match='out of range for 3 backbone feature maps'):
        neck(in_index=(0, 3), in_channels=8)(features(), TASKS)


def dense_samples(n, size=16):
    samples = []
    for _ in range(n):
        s = TaskDataSample(metainfo=dict(tasks=TASKS, img_shape=(size, size),
                                         pad_shape=(size, size)))
        s.gt_sem_seg = torch.randint(0, 3, (size, size))
        s.gt_depth = torch.rand(size, size) + 0.5
        samples.append(s)
    return samples


def taskexpert_model(backbone):
    head = dict(in_channels=6, in_index=0, channels=8)
    return MultiTaskModel(
        backbone=backbone,
        neck=dict(type='TaskExpertNeck', tasks=TASKS, in_channels=32, in_index=(0, 1),
                  channels=6, num_experts=2),
        heads=dict(semseg=dict(type='SemSegHead', num_classes=3, **head),
                   depth=dict(type='DepthHead', **head)))


def test_taskexpert_on_the_vit_trains_and_predicts():
    model = taskexpert_model(dict(type='ViT', arch=dict(embed_dim=32, depth=2, num_heads=2),
                                  img_size=16, patch_size=4, out_indices=(0, 1)))
    losses = model(torch.randn(2, 3, 16, 16), dense_samples(2), mode='loss')
    assert set(losses) == {'loss_semseg', 'loss_depth'}
    sum(losses.values()).backward()
    assert model.neck.layers[0].gates['semseg'].fc.weight.grad.abs().sum() > 0
    model.eval()
    samples = model(torch.randn(2, 3, 16, 16), dense_samples(2), mode='predict')
    assert samples[0].pred_sem_seg.shape == samples[0].pred_depth.shape == (16, 16)


def test_taskexpert_on_the_moe_vit():
    model = taskexpert_model(dict(
        type='MoEViT', arch=dict(embed_dim=32, depth=2, num_heads=2), tasks=TASKS,
        moa_layers=[0], mlp_layers=[1], moa_experts=4, mlp_experts=4, mlp_top_k=2,
        img_size=16, patch_size=4, out_indices=(0, 1)))
    neck_calls = []
    model.neck.register_forward_hook(lambda m, args, out: neck_calls.append(args[1]))
    losses = model(torch.randn(2, 3, 16, 16), dense_samples(2), mode='loss')
    # the task-routed backbone runs once per task; each run's features go to its task
    assert neck_calls == [('semseg', ), ('depth', )]
    assert {'loss_semseg', 'loss_depth'} <= set(losses)
    sum(losses.values()).backward()
    for task in TASKS:
        assert model.neck.layers[1].gates[task].fc.weight.grad.abs().sum() > 0
