"""CPU distributed training: 2 gloo processes train a toy model in sync with a 1-process run."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from modzoo.engine import distributed
from modzoo.engine.distributed import (CPUAwareDistributedDataParallel, ddp_wrapper_cfg,
                                       init_distributed)

WORLD_SIZE = 2


class ToyRegressor(BaseModel):
    """y = w . x + b with the same fixed initial weights in every process."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[0.5, -0.25, 0.1]]))
            self.linear.bias.fill_(0.2)

    def forward(self, inputs, targets, mode='tensor'):
        """inputs: [B, 3], targets: [B]."""
        pred = self.linear(inputs).squeeze(-1)
        return dict(loss=((pred - targets) ** 2).mean()) if mode == 'loss' else pred


class ToyData(Dataset):
    """16 random points of a fixed linear function."""

    def __init__(self):
        gen = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(16, 3, generator=gen)
        self.targets = self.inputs @ torch.tensor([1.0, 2.0, -1.0]) + 0.5

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, index):
        return dict(inputs=self.inputs[index], targets=self.targets[index])


def train(work_dir, batch_size, **kwargs):
    """Train 2 epochs of SGD; the sampler does not shuffle, so with 2 ranks each iteration's two
    per-rank batches of 4 together are the single-process batch of 8."""
    runner = Runner(
        model=ToyRegressor(),
        work_dir=str(work_dir),
        experiment_name=f'ddp_{os.environ.get("RANK", "single")}_{os.path.basename(work_dir)}',
        default_scope='modzoo',
        train_dataloader=dict(dataset=ToyData(), batch_size=batch_size, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05)),
        train_cfg=dict(by_epoch=True, max_epochs=2),
        default_hooks=dict(checkpoint=None),
        **kwargs)
    runner.train()
    return runner


def _worker(rank, port, out_dir):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE),
                      MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # configs name nccl (default_runtime.py); without CUDA init_distributed must use gloo
    cfg = dict(launcher='pytorch', env_cfg=dict(dist_cfg=dict(backend='nccl', timeout=60)))
    init_distributed(cfg)
    assert cfg['model_wrapper_cfg'] == ddp_wrapper_cfg()
    runner = train(out_dir / f'rank{rank}', batch_size=4, launcher='pytorch',
                   env_cfg=cfg['env_cfg'], cfg=dict(model_wrapper_cfg=cfg['model_wrapper_cfg']))
    assert torch.distributed.get_backend() == 'gloo'
    assert isinstance(runner.model, CPUAwareDistributedDataParallel)
    torch.save(runner.model.module.state_dict(), out_dir / f'rank{rank}.pth')
    torch.distributed.destroy_process_group()


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_two_gloo_processes_train_like_one_process(tmp_path, monkeypatch):
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')  # the CPU path, also on a machine with GPUs
    mp.spawn(_worker, args=(_free_port(), tmp_path), nprocs=WORLD_SIZE)
    ranks = [torch.load(tmp_path / f'rank{rank}.pth', weights_only=True)
             for rank in range(WORLD_SIZE)]
    reference = train(tmp_path / 'single', batch_size=4 * WORLD_SIZE).model.state_dict()
    initial = ToyRegressor().state_dict()
    for name, value in reference.items():
        assert torch.equal(ranks[0][name], ranks[1][name])
        torch.testing.assert_close(ranks[0][name], value)
        assert not torch.equal(value, initial[name])  # training moved the weights


def test_init_distributed_without_torchrun_env_names_the_missing_variables(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    for name in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match='RANK, LOCAL_RANK, WORLD_SIZE.*torchrun'):
        init_distributed(dict(launcher='pytorch'))
    with pytest.raises(ValueError, match="launcher 'slurm' needs CUDA"):
        init_distributed(dict(launcher='slurm'))
    cfg = dict(launcher='none')
    init_distributed(cfg)  # nothing to start, nothing to wrap
    assert cfg == dict(launcher='none') and not torch.distributed.is_initialized()


def test_with_cuda_init_distributed_is_mmengines_init_dist(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(distributed, 'init_dist',
                        lambda launcher, **kw: calls.append((launcher, kw)))
    cfg = dict(launcher='slurm', find_unused_parameters=True,
               env_cfg=dict(dist_cfg=dict(backend='nccl', timeout=60)))
    init_distributed(cfg)
    assert calls == [('slurm', dict(backend='nccl', timeout=60))]
    assert cfg['model_wrapper_cfg'] == ddp_wrapper_cfg(find_unused_parameters=True)
