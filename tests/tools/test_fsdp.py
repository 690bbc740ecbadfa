"""FSDP2 training: 2 gloo processes train as DDP does, checkpoints gather, resume is exact."""
import json
import os
import os.path as osp
import socket
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp
from mmengine.config import Config
from mmengine.optim import OptimWrapper

from modzoo.engine.fsdp import FullyShardedModel
from modzoo.models.multi_task_model import MultiTaskModel
from modzoo.registry import MODEL_WRAPPERS
from modzoo.structures import TaskDataSample

from tool_runner import QUICKSTART, REPO, load_tool, run_tool, tiny_config


def small_config(tmp_path, data_root):
    """The quickstart config with a 2-block, 32-wide ViT, 4 iterations of batch 4."""
    path = tmp_path / 'small.py'
    path.write_text(f'''
_base_ = [{tiny_config(tmp_path, data_root, max_iters=4, base=QUICKSTART)!r}]
model = dict(backbone=dict(arch=dict(_delete_=True, embed_dim=32, depth=2, num_heads=2),
                           out_indices=(0, 1)),
             heads=dict(cls=dict(in_channels=32), multilabel=dict(in_channels=32),
                        semseg=dict(in_channels=32, in_index=(0, 1)),
                        depth=dict(in_channels=32, in_index=(0, 1))))
default_hooks = dict(checkpoint=dict(interval=2))
''')
    return str(path)


def losses(work_dir):
    [scalars] = [osp.join(work_dir, d, 'vis_data', 'scalars.json') for d in os.listdir(work_dir)
                 if osp.isfile(osp.join(work_dir, d, 'vis_data', 'scalars.json'))]
    with open(scalars) as f:
        return [json.loads(line)['loss'] for line in f if '"loss"' in line]


def weights(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def test_fsdp_trains_like_ddp_and_resumes_exactly(tiny_synth, tmp_path):
    cfg = small_config(tmp_path, tiny_synth)
    runs = {name: str(tmp_path / name) for name in ('ddp', 'fsdp', 'resumed')}
    for strategy in ('ddp', 'fsdp'):
        run_tool('tools/train.py', cfg, '--work-dir', runs[strategy], '--launcher', 'pytorch',
                 '--strategy', strategy, '--no-validate', nproc=2)
    ddp, fsdp = losses(runs['ddp']), losses(runs['fsdp'])
    assert len(fsdp) == 4 and fsdp == pytest.approx(ddp, abs=1e-5)
    # the sharded run's checkpoint is an ordinary one: the same keys and nearly the same values
    a = weights(osp.join(runs['ddp'], 'iter_4.pth'))
    b = weights(osp.join(runs['fsdp'], 'iter_4.pth'))
    assert a['state_dict'].keys() == b['state_dict'].keys()
    assert a['optimizer']['state'].keys() == b['optimizer']['state'].keys()
    for key, value in a['state_dict'].items():
        torch.testing.assert_close(b['state_dict'][key], value, atol=1e-3, rtol=0)
    # stopped at iteration 2 and resumed: the same weights and optimizer state as straight
    run_tool('tools/train.py', cfg, '--work-dir', runs['resumed'], '--launcher', 'pytorch',
             '--strategy', 'fsdp', '--no-validate',
             '--resume', osp.join(runs['fsdp'], 'iter_2.pth'), nproc=2)
    c = weights(osp.join(runs['resumed'], 'iter_4.pth'))
    assert all(torch.equal(c['state_dict'][k], v) for k, v in b['state_dict'].items())
    for index, state in b['optimizer']['state'].items():
        assert all(torch.equal(c['optimizer']['state'][index][k], v) for k, v in state.items())


def tiny_moe(seed=0):
    torch.manual_seed(seed)
    return MultiTaskModel(
        backbone=dict(type='MoEViT', arch=dict(embed_dim=16, depth=2, num_heads=2),
                      tasks=['cls'], moa_layers=[0], mlp_layers=[1], moa_experts=4,
                      mlp_experts=4, mlp_top_k=2, img_size=16, patch_size=4, out_indices=(1, ),
                      mi_weight=0.01),
        heads=dict(cls=dict(type='ClsHead', num_classes=3, in_channels=16)),
        data_preprocessor=dict(type='ImgDataPreprocessor', mean=[128] * 3, std=[64] * 3))


def _train_moe(rank, port, out_dir, activation_checkpointing):
    os.environ.update(RANK=str(rank), WORLD_SIZE='2', MASTER_ADDR='127.0.0.1',
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group('gloo')
    model = FullyShardedModel(tiny_moe(), activation_checkpointing=activation_checkpointing)
    optim = OptimWrapper(torch.optim.AdamW(model.module.parameters(), lr=1e-2))
    gen = torch.Generator().manual_seed(rank)
    losses = []
    for _ in range(3):
        data = dict(inputs=list(torch.rand(2, 3, 16, 16, generator=gen) * 255), data_samples=[
            TaskDataSample(metainfo=dict(tasks=('cls', )), gt_label=torch.tensor(i))
            for i in range(2)])
        losses.append(model.train_step(data, optim)['loss'].item())
    buffers = {k: v.clone() for k, v in model.module.named_buffers()}
    torch.save(dict(losses=losses, buffers=buffers), out_dir / f'{activation_checkpointing}{rank}')
    torch.distributed.destroy_process_group()


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_activation_checkpointing_counts_moe_usage_once(tmp_path, monkeypatch):
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')
    for checkpointing in (False, True):
        mp.spawn(_train_moe, args=(_free_port(), tmp_path, checkpointing), nprocs=2)
    plain, recomputed = (torch.load(tmp_path / f'{c}0', weights_only=True)
                         for c in (False, True))
    assert recomputed['losses'] == pytest.approx(plain['losses'], abs=1e-6)
    usage = [k for k in plain['buffers'] if k.endswith('router.usage')]
    assert len(usage) == 2 and plain['buffers'][usage[0]].sum() == 3 * 2 * 17 * 2
    for key, value in plain['buffers'].items():
        torch.testing.assert_close(recomputed['buffers'][key], value)


@pytest.mark.parametrize('config', [
    'taskexpert/taskexpert_vit-l16_nyud-448x576_fsdp.py',
    'taskexpert/taskexpert_vit-l16_pascal-context-512x512_fsdp.py',
    'moe_vit/moe-vit-b16_modsquad-twice_in1k-ade20k-224px_fsdp.py',
    'uniperceiver/uniperceiver-v2-large_swin-l_roberta-base_fsdp.py'])
def test_full_size_fsdp_variants(config):
    cfg = Config.fromfile(osp.join(REPO, 'configs', config))
    wrapper = MODEL_WRAPPERS.get(cfg.model_wrapper_cfg.type)
    assert wrapper is FullyShardedModel
    assert cfg.model_wrapper_cfg.mixed_precision == dict(param_dtype='bfloat16',
                                                         reduce_dtype='float32')
    base = Config.fromfile(osp.join(REPO, 'configs', config.replace('_fsdp', '')))
    assert cfg.model == base.model and 'model_wrapper_cfg' not in base


def test_fsdp_needs_a_launcher():
    train = load_tool('train.py')
    cfg = Config.fromfile(QUICKSTART)
    with pytest.raises(SystemExit, match='torchrun'):
        train.merge_args(cfg, SimpleNamespace(
            work_dir=None, config=QUICKSTART, amp=False, no_validate=False, resume=None,
            auto_scale_lr=False, no_pin_memory=False, no_persistent_workers=False,
            launcher='none', strategy='fsdp', cfg_options=None))
