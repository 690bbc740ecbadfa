"""ExpertUsageHook in a 2-process gloo run: saved usage counts are those of all ranks."""
import json
import os

import torch
import torch.multiprocessing as mp
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from modzoo.engine.distributed import init_distributed
from modzoo.models.layers import MoEMlp

from test_distributed import WORLD_SIZE, _free_port


class ToyMoE(BaseModel):
    """One MoE MLP with routers for tasks 'a' and 'b' and the MI loss."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.moe = MoEMlp(4, num_experts=4, top_k=2, tasks=['a', 'b'], mi_weight=0.01,
                          router_init_std=1.0)

    def forward(self, inputs, task, mode='tensor'):
        """inputs [B, 4] of one task."""
        out, aux = self.moe(inputs[:, None], task[0])
        return dict(loss=out.square().mean(), **aux) if mode == 'loss' else out


class ToyTasks(Dataset):
    """16 random points; each step's 4 points (2 per rank) belong to one task."""

    def __init__(self):
        self.inputs = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, index):
        return dict(inputs=self.inputs[index], task='ab'[index // 4 % 2])


class LocalCounts(Hook):
    """Adds up this rank's own router counts of each step, before the usage hook syncs."""
    priority = 'HIGH'

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.before = runner.model.module.moe.router.usage.clone()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        step = runner.model.module.moe.router.usage - self.before
        self.total = step if batch_idx == 0 else self.total + step


def _worker(rank, port, out_dir):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE),
                      MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    cfg = dict(launcher='pytorch', env_cfg=dict(dist_cfg=dict(backend='gloo', timeout=60)))
    init_distributed(cfg)
    counts = LocalCounts()
    runner = Runner(
        model=ToyMoE(), work_dir=str(out_dir), experiment_name=f'usage_ddp_{rank}',
        train_dataloader=dict(dataset=ToyTasks(), batch_size=2, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=True, max_epochs=1), default_scope='modzoo',
        launcher='pytorch', env_cfg=cfg['env_cfg'],
        cfg=dict(model_wrapper_cfg=cfg['model_wrapper_cfg']),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        custom_hooks=[dict(type='ExpertUsageHook'), counts])
    runner.train()
    router = runner.model.module.moe.router
    torch.save(dict(local=counts.total, usage_ema=router.usage_ema,
                    joint=runner.model.module.moe.aux_loss.mi.joint),
               out_dir / f'rank{rank}.pth')
    torch.distributed.destroy_process_group()


def test_saved_usage_is_the_sum_of_the_ranks_counts(tmp_path, monkeypatch):
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')
    mp.spawn(_worker, args=(_free_port(), tmp_path), nprocs=WORLD_SIZE)
    ranks = [torch.load(tmp_path / f'rank{r}.pth', weights_only=True) for r in range(2)]
    assert not torch.equal(ranks[0]['local'], ranks[1]['local'])  # the ranks saw other data
    total = ranks[0]['local'] + ranks[1]['local']
    assert total.sum() == 16 * 2  # 16 points, top-2
    saved = torch.load(tmp_path / 'epoch_1.pth', weights_only=False)['state_dict']
    assert torch.equal(saved['moe.router.usage'], total)
    with open(tmp_path / 'expert_usage_train.json') as f:
        assert json.load(f)['layers']['moe']['counts'] == total.tolist()
    for key in ('usage_ema', 'joint'):  # averaged: the same estimate on every rank
        torch.testing.assert_close(ranks[0][key], ranks[1][key])
