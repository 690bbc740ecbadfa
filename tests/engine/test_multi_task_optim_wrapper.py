"""MultiTaskOptimWrapper on a toy two-task MultiTaskModel: the update each weighting asks
for, the regime check, resume state, and 2 gloo processes against 1 process."""
import copy
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from mmengine.optim import OptimWrapper
from torch import nn

from modzoo.engine import MultiTaskOptimWrapper, check_weighting_sampler
from modzoo.engine.distributed import CPUAwareDistributedDataParallel
from modzoo.models.multi_task_model import MultiTaskModel
from modzoo.registry import MODELS, WEIGHTINGS
from modzoo.structures import Features, TaskDataSample

TASKS = ('a', 'b')


@MODELS.register_module(force=True)
class ToyTrunk(nn.Module):
    """[B, 3, 2, 2] -> a shared 4-d feature."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 4)

    def forward(self, x, task=None):
        y = torch.tanh(self.fc(x.flatten(1)))
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
    assert not torch.allclose(c.backbone.fc.weight, a.backbone.fc.weight)


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
DDP_METHODS = ('EW', 'PCGrad', 'CAGrad')


def train_three_steps(model, weighting, batches):
    optim = wrapper(model, weighting)
    for batch in batches:
        model.train_step(batch, optim)
    return getattr(model, 'module', model).state_dict()


def _slice(batch, rank, world_size):
    n = len(batch['inputs']) // world_size
    return {k: v[rank * n:(rank + 1) * n] for k, v in batch.items()}


def _worker(rank, world_size, port, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group('gloo', rank=rank, world_size=world_size)
    for name in DDP_METHODS:
        model = CPUAwareDistributedDataParallel(make_model(), find_unused_parameters=True)
        batches = [_slice(make_batch(seed=s), rank, world_size) for s in range(3)]
        torch.save(train_three_steps(model, name, batches), out_dir / f'{name}_{rank}.pth')
    torch.distributed.destroy_process_group()


def test_two_processes_update_like_one_process(tmp_path):
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    mp.spawn(_worker, args=(2, port, tmp_path), nprocs=2)
    for name in DDP_METHODS:
        single = train_three_steps(make_model(), name, [make_batch(seed=s) for s in range(3)])
        ranks = [torch.load(tmp_path / f'{name}_{r}.pth', weights_only=True) for r in range(2)]
        for key, value in single.items():
            assert torch.equal(ranks[0][key], ranks[1][key]), (name, key)
            torch.testing.assert_close(ranks[0][key], value, atol=1e-6, rtol=0,
                                       msg=f'{name} {key}')
        assert not torch.equal(single['backbone.fc.weight'],
                               make_model().state_dict()['backbone.fc.weight'])
