"""MultiTaskOptimWrapper on a toy two-task MultiTaskModel: the update each weighting asks
for, the regime check, resume state, bf16 autocast, and 2 gloo processes (DDP, FSDP)
against 1 process."""
import copy
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from mmengine.optim import OptimWrapper
from torch import nn

from modzoo.engine import (FullyShardedModel, MultiTaskOptimWrapper, check_weighting_sampler,
                           check_weighting_strategy)
from modzoo.engine.distributed import CPUAwareDistributedDataParallel
from modzoo.engine.fsdp import _full
from modzoo.engine.optimizers import (BF16MultiTaskOptimWrapper, amp_optim_wrapper,
                                      bf16_optim_wrapper)
from modzoo.models.multi_task_model import MultiTaskModel
from modzoo.registry import MODELS, WEIGHTINGS
from modzoo.structures import Features, TaskDataSample

TASKS = ('a', 'b')


@MODELS.register_module(force=True)
class ToyTrunk(nn.Module):
    """[B, 3, 2, 2] -> a shared 4-d feature (one block: an FSDP unit)."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(12, 4)])

    def forward(self, x, task=None):
        y = torch.tanh(self.blocks[0](x.flatten(1)))
        return Features(maps=(y, ), cls_token=y)


@MODELS.register_module(force=True)
class ToyRegressionHead(nn.Module):
    def __init__(self, key):
        super().__init__()
        self.key = key
        self.fc = nn.Linear(4, 1)

    def loss(self, feats, samples):
        target = torch.stack([s.metainfo[self.key] for s in samples])
        return dict(loss=((self.fc(feats.cls_token).squeeze(1) - target) ** 2).mean())


def make_model():
    torch.manual_seed(0)
    return MultiTaskModel(backbone=dict(type='ToyTrunk'),
                          heads={t: dict(type='ToyRegressionHead', key=f'y_{t}') for t in TASKS},
                          data_preprocessor=dict(type='ImgDataPreprocessor'))


def make_batch(n=8, seed=1, tasks=TASKS):
    """n samples labelled for ``tasks``; targets pull the two tasks apart (they conflict)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 2, 2, generator=gen)
    s = x.flatten(1).sum(1)
    samples = [TaskDataSample(metainfo=dict(tasks=tasks, y_a=s[i], y_b=-2 * s[i] + 1))
               for i in range(n)]
    return dict(inputs=list(x), data_samples=samples)


def wrapper(model, method, lr=0.1, **kwargs):
    return MultiTaskOptimWrapper(torch.optim.SGD(model.parameters(), lr=lr),
                                 weighting=dict(type=method, **kwargs))


def per_task_grads(model, batch):
    """Reference: [T, P] shared gradients and the heads' gradients by plain autograd."""
    losses = model.loss(*model.data_preprocessor(batch, True).values())
    shared = list(model.backbone.parameters())
    rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(
        losses[f'loss_{t}'], shared, retain_graph=True)]) for t in TASKS]
    heads = {t: torch.autograd.grad(losses[f'loss_{t}'], list(model.heads[t].parameters()),
                                    retain_graph=True) for t in TASKS}
    return torch.stack(rows), heads, torch.stack([losses[f'loss_{t}'].detach() for t in TASKS])


def test_ew_is_mmengines_step():
    a, b = make_model(), make_model()
    plain = OptimWrapper(torch.optim.SGD(a.parameters(), lr=0.1))
    ew = wrapper(b, 'EW')
    for seed in range(3):
        a.train_step(make_batch(seed=seed), plain)
        log = b.train_step(make_batch(seed=seed), ew)
    assert set(log) == {'loss', 'loss_a', 'loss_b'}
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize('name', ['PCGrad', 'CAGrad', 'MGDA', 'IMTL', 'NashMTL', 'AlignedMTL'])
def test_gradient_method_step_applies_its_combination(name):
    model = make_model()
    reference = copy.deepcopy(model)
    batch = make_batch()
    grads, head_grads, losses = per_task_grads(reference, batch)
    combined = WEIGHTINGS.build(dict(type=name), default_args=dict(num_tasks=2)).combine(
        grads, losses)
    model.train_step(batch, wrapper(model, name))
    expected = torch.cat([p.reshape(-1) for p in reference.backbone.parameters()]) \
        - 0.1 * combined
    got = torch.cat([p.detach().reshape(-1) for p in model.backbone.parameters()])
    torch.testing.assert_close(got, expected)
    for t in TASKS:  # each head steps along its own task's gradient
        for p, p0, g in zip(model.heads[t].parameters(), reference.heads[t].parameters(),
                            head_grads[t]):
            torch.testing.assert_close(p.detach(), p0.detach() - 0.1 * g)


def test_mgda_ub_weights_the_losses_by_the_min_norm_point_of_the_representation_grads():
    model = make_model()
    with torch.no_grad():  # head b's sign flipped: dL_a/dZ and dL_b/dZ conflict (cos -0.82)
        model.heads['b'].fc.weight.neg_()
    reference = copy.deepcopy(model)
    batch = make_batch()
    data = reference.data_preprocessor(batch, True)
    feats = reference.backbone(data['inputs'])  # Z: the cls_token (= maps[0]) [8, 4]
    losses = [reference.heads[t].loss(feats, data['data_samples'])['loss'] for t in TASKS]
    ga, gb = (torch.autograd.grad(loss, feats.cls_token, retain_graph=True)[0].flatten()
              for loss in losses)
    # Sener and Koltun, Alg. 1: gamma = (gb - ga) . gb / ||ga - gb||^2, clipped to [0, 1]
    gamma = ((gb - ga) @ gb / (ga - gb).norm() ** 2).clamp(0, 1)
    params = list(reference.parameters())
    grads = torch.autograd.grad(gamma * losses[0] + (1 - gamma) * losses[1], params)
    log = model.train_step(batch, wrapper(model, 'MGDAUB'))
    assert log['weight_a'] == pytest.approx(gamma.item(), abs=1e-6)
    assert 0.05 < gamma < 0.95  # a real trade-off, not a corner of the simplex
    for p, p0, g in zip(model.parameters(), params, grads):  # heads included
        torch.testing.assert_close(p.detach(), p0.detach() - 0.1 * g)


def test_imtl_steps_the_heads_on_scaled_losses_and_balances_the_scaled_gradients():
    model = make_model()
    reference = copy.deepcopy(model)
    batch = make_batch()
    optim = wrapper(model, 'IMTL')
    optim._build_weighting(model)
    optim.weighting.scales.log_scale.data.copy_(torch.tensor([0.3, -0.2]))
    scales = torch.tensor([0.3, -0.2]).exp()
    grads, head_grads, losses = per_task_grads(reference, batch)
    combined = WEIGHTINGS.build(dict(type='IMTLG', num_tasks=2)).combine(
        scales[:, None] * grads, losses)
    model.train_step(batch, optim)
    expected = torch.cat([p.reshape(-1) for p in reference.backbone.parameters()]) \
        - 0.1 * combined
    got = torch.cat([p.detach().reshape(-1) for p in model.backbone.parameters()])
    torch.testing.assert_close(got, expected)
    for i, t in enumerate(TASKS):
        for p, p0, g in zip(model.heads[t].parameters(), reference.heads[t].parameters(),
                            head_grads[t]):
            torch.testing.assert_close(p.detach(), p0.detach() - 0.1 * scales[i] * g)
    # and IMTL-L took its step: s moves towards e^s L = 1
    assert not torch.equal(optim.weighting.scales.log_scale.detach(),
                           torch.tensor([0.3, -0.2]))


@pytest.mark.parametrize('name', ['UW', 'PCGrad', 'MGDAUB', 'IMTL'])
def test_bf16_autocast_trains_with_fp32_losses_and_gradients(name, monkeypatch):
    monkeypatch.setattr(bf16_optim_wrapper, 'cpu_supports_bf16', lambda: True)
    cfg = amp_optim_wrapper(dict(type='MultiTaskOptimWrapper', weighting=dict(type=name)), 'cpu')
    assert cfg['type'] == 'BF16MultiTaskOptimWrapper'
    with monkeypatch.context() as patch:  # fp16 loss scaling would scale each task's grads
        patch.setattr(bf16_optim_wrapper, 'bf16_support', lambda device: 'no bf16')
        with pytest.raises(ValueError, match='MultiTaskOptimWrapper needs bf16'):
            amp_optim_wrapper(dict(type='MultiTaskOptimWrapper'), 'cuda')
    model = make_model()
    optim = BF16MultiTaskOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
                                      weighting=cfg['weighting'])
    seen = []
    model.backbone.blocks[0].register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    model.heads['a'].fc.register_full_backward_hook(
        lambda m, gi, go: seen.append(m.weight.dtype))
    batch = make_batch()
    losses = [model.train_step(batch, optim)['loss'].item() for _ in range(6)]
    assert torch.bfloat16 in seen and all(p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < 0.8 * losses[0], losses
    task_losses, _ = optim._split(model.loss(*model.data_preprocessor(batch, True).values()))
    assert all(v.dtype == torch.float32 for v in task_losses.values())


def test_loss_weighting_logs_its_weights_and_learns():
    model = make_model()
    optim = wrapper(model, 'UW', lr=0.01)
    log = model.train_step(make_batch(), optim)
    assert log['weight_a'] == pytest.approx(0.5 * torch.exp(torch.tensor(0.5)).item())
    assert not torch.equal(optim.weighting.log_var.detach(), torch.full((2, ), -0.5))


def test_fmtl_with_zero_radius_is_its_base_weighting():
    a, b = make_model(), make_model()
    a.train_step(make_batch(), wrapper(a, 'PCGrad'))
    b.train_step(make_batch(), wrapper(b, 'FMTL', rho=0.0, weighting=dict(type='PCGrad')))
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)
    c = make_model()  # a real radius moves the update
    c.train_step(make_batch(), wrapper(c, 'FMTL', rho=0.5, weighting=dict(type='PCGrad')))
    assert not torch.allclose(c.backbone.blocks[0].weight, a.backbone.blocks[0].weight)


def test_fmtl_on_two_sources_perturbs_each_task_on_its_own_samples():
    """A batch of two sources (4 samples for a, 4 for b): the step is F-MTL's formula with EW
    (shared: the sum of the gradients at each task's perturbed point; head t: its gradient
    at task t's point), and each perturbed forward sees only its task's 4 samples."""
    a, b = make_batch(n=4, seed=1, tasks=('a', )), make_batch(n=4, seed=2, tasks=('b', ))
    batch = dict(inputs=a['inputs'] + b['inputs'], data_samples=a['data_samples']
                 + b['data_samples'])
    model, rho = make_model(), 0.5
    reference = copy.deepcopy(model)
    shared = list(reference.backbone.parameters())
    expected_shared = [p.detach().clone() for p in shared]
    expected_heads = {}
    for t in TASKS:
        point = copy.deepcopy(reference)
        head = list(point.heads[t].parameters())
        loss = point.loss(*point.data_preprocessor(batch, True).values())[f'loss_{t}']
        grads = torch.autograd.grad(loss, list(point.backbone.parameters()) + head)
        g, h = grads[:len(shared)], grads[len(shared):]
        with torch.no_grad():
            for params, step in ((point.backbone.parameters(), g), (head, h)):
                norm = torch.cat([x.reshape(-1) for x in step]).norm()
                for p, x in zip(params, step):
                    p.add_(rho * x / norm)
        loss = point.loss(*point.data_preprocessor(batch, True).values())[f'loss_{t}']
        grads = torch.autograd.grad(loss, list(point.backbone.parameters()) + head)
        for e, x in zip(expected_shared, grads[:len(shared)]):
            e.sub_(0.1 * x)
        expected_heads[t] = [p0.detach() - 0.1 * x
                             for p0, x in zip(reference.heads[t].parameters(), grads[len(shared):])]
    seen = []
    model.backbone.register_forward_hook(lambda m, args, out: seen.append(len(args[0])))
    model.train_step(batch, wrapper(model, 'FMTL', rho=rho))
    assert seen == [4, 4, 4, 4]  # one forward of both sources, then one per task
    for p, e in zip(model.backbone.parameters(), expected_shared):
        torch.testing.assert_close(p.detach(), e)
    for t in TASKS:
        for p, e in zip(model.heads[t].parameters(), expected_heads[t]):
            torch.testing.assert_close(p.detach(), e)


def test_famo_takes_its_step_after_the_update():
    model = make_model()
    optim = wrapper(model, 'FAMO')
    for seed in range(2):
        model.train_step(make_batch(seed=seed), optim)
    assert optim.weighting.logits.abs().sum() > 0


def test_gradient_method_on_a_one_task_step_names_the_sampler_mode():
    model = make_model()
    with pytest.raises(RuntimeError, match="no loss of task.*'b'.*mode='all_sources'"):
        model.train_step(make_batch(tasks=('a', )), wrapper(model, 'PCGrad'))
    # a loss weighting trains on one task per step
    model.train_step(make_batch(tasks=('a', )), wrapper(model, 'DWA'))


def test_build_time_check_of_weighting_and_sampler():
    sources = dict(s1=dict(tasks=['a']), s2=dict(tasks=['b']))
    cfg = dict(optim_wrapper=dict(type='MultiTaskOptimWrapper', weighting=dict(type='CAGrad')),
               train_dataloader=dict(batch_sampler=dict(type='TaskBalancedSampler'),
                                     dataset=dict(type='MultiTaskDataset', sources=sources)))
    with pytest.raises(ValueError, match="'CAGrad' needs every task.*mode='all_sources'"):
        check_weighting_sampler(cfg)
    cfg['train_dataloader']['batch_sampler']['mode'] = 'all_sources'
    check_weighting_sampler(cfg)
    cfg['train_dataloader']['batch_sampler']['mode'] = 'one_source'
    cfg['optim_wrapper']['weighting'] = dict(type='DWA')
    check_weighting_sampler(cfg)
    cfg['optim_wrapper']['weighting'] = dict(type='PCGrd')
    with pytest.raises(KeyError, match='PCGrad'):
        check_weighting_sampler(cfg)
    with pytest.raises(ValueError, match='accumulative_counts=1'):
        MultiTaskOptimWrapper(torch.optim.SGD(make_model().parameters(), lr=0.1),
                              weighting=dict(type='PCGrad'), accumulative_counts=2)


def test_weighting_state_survives_a_resume():
    model = make_model()
    optim = wrapper(model, 'GradVac')
    model.train_step(make_batch(), optim)
    state = optim.state_dict()
    fresh = wrapper(make_model(), 'GradVac')
    fresh.load_state_dict(state)  # before the first step: kept until the weighting is built
    fresh._build_weighting(model)
    torch.testing.assert_close(fresh.weighting.targets, optim.weighting.targets)
    assert fresh.state_dict()['weighting']['targets'].abs().sum() > 0


# -- two gloo processes against one process at the same global batch --------------------
DDP_METHODS = ('EW', 'PCGrad', 'CAGrad', 'MGDAUB')


def train_three_steps(model, weighting, batches):
    optim = wrapper(model, weighting)
    for batch in batches:
        model.train_step(batch, optim)
    return getattr(model, 'module', model).state_dict()


def _slice(batch, rank, world_size):
    n = len(batch['inputs']) // world_size
    return {k: v[rank * n:(rank + 1) * n] for k, v in batch.items()}


def _init_gloo(rank, world_size, port):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group('gloo', rank=rank, world_size=world_size)


def _spawn_two(worker, out_dir):
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    mp.spawn(worker, args=(2, port, out_dir), nprocs=2)


def _worker(rank, world_size, port, out_dir):
    _init_gloo(rank, world_size, port)
    for name in DDP_METHODS:
        model = CPUAwareDistributedDataParallel(make_model(), find_unused_parameters=True)
        batches = [_slice(make_batch(seed=s), rank, world_size) for s in range(3)]
        torch.save(train_three_steps(model, name, batches), out_dir / f'{name}_{rank}.pth')
    torch.distributed.destroy_process_group()


def test_two_processes_update_like_one_process(tmp_path):
    _spawn_two(_worker, tmp_path)
    for name in DDP_METHODS:
        single = train_three_steps(make_model(), name, [make_batch(seed=s) for s in range(3)])
        ranks = [torch.load(tmp_path / f'{name}_{r}.pth', weights_only=True) for r in range(2)]
        for key, value in single.items():
            assert torch.equal(ranks[0][key], ranks[1][key]), (name, key)
            torch.testing.assert_close(ranks[0][key], value, atol=1e-6, rtol=0,
                                       msg=f'{name} {key}')
        assert not torch.equal(single['backbone.blocks.0.weight'],
                               make_model().state_dict()['backbone.blocks.0.weight'])


# -- FSDP2: loss weightings and MGDA-UB go through the multi-task step; gradient methods
# (per-task parameter gradients) are refused, at build time and at the first step ---------
FSDP_METHODS = ('UW', 'MGDAUB')


def _fsdp_worker(rank, world_size, port, out_dir):
    _init_gloo(rank, world_size, port)
    for name in FSDP_METHODS:
        model = FullyShardedModel(make_model())
        optim = wrapper(model.module, name)
        for seed in range(3):
            model.train_step(_slice(make_batch(seed=seed), rank, world_size), optim)
        state = {k: _full(v) for k, v in model.module.state_dict().items()}
        torch.save(state, out_dir / f'fsdp_{name}_{rank}.pth')
    model = FullyShardedModel(make_model())
    with pytest.raises(RuntimeError, match="'PCGrad' combines the per-task gradients.*ddp"):
        model.train_step(_slice(make_batch(), rank, world_size), wrapper(model.module, 'PCGrad'))
    torch.distributed.destroy_process_group()


def test_fsdp_runs_loss_weightings_like_one_process_and_refuses_gradient_methods(tmp_path):
    _spawn_two(_fsdp_worker, tmp_path)
    for name in FSDP_METHODS:
        single = train_three_steps(make_model(), name, [make_batch(seed=s) for s in range(3)])
        for rank in range(2):
            state = torch.load(tmp_path / f'fsdp_{name}_{rank}.pth', weights_only=True)
            for key, value in single.items():
                torch.testing.assert_close(state[key], value, atol=1e-6, rtol=0,
                                           msg=f'{name} {key}')
    cfg = dict(optim_wrapper=dict(type='MultiTaskOptimWrapper', weighting=dict(type='CAGrad')),
               model_wrapper_cfg=dict(type='modzoo.FullyShardedModel'))
    with pytest.raises(ValueError, match="'CAGrad' combines the per-task gradients.*ddp"):
        check_weighting_strategy(cfg)
    for name in ('UW', 'MGDAUB'):
        cfg['optim_wrapper']['weighting'] = dict(type=name)
        check_weighting_strategy(cfg)
