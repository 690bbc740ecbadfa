"""The CUDA code paths, in one file for a device run: ``pytest tests/test_cuda_paths.py``.

Skipped without CUDA (the NCCL test without 2 devices): F.grouped_mm MoE dispatch in bf16,
bf16 autocast through a MoE ViT, inference and export on the GPU, FSDP2 over NCCL.
"""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import OptimWrapper

from modzoo.deploy import TaskPredictor
from modzoo.engine.fsdp import FullyShardedModel
from modzoo.models.layers.moe_dispatch import (_grouped_mm_supported, dispatch, grouped_linear,
                                               plan_dispatch)
from modzoo.models.multi_task_model import MultiTaskModel
from modzoo.structures import TaskDataSample

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
needs_two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2,
                                    reason='needs 2 CUDA devices (NCCL)')


def moe_model(seed=0):
    torch.manual_seed(seed)
    return MultiTaskModel(
        backbone=dict(type='MoEViT', arch=dict(embed_dim=64, depth=2, num_heads=2),
                      tasks=['cls'], moa_layers=[0], mlp_layers=[1], moa_experts=4,
                      mlp_experts=8, mlp_top_k=2, img_size=32, patch_size=8, out_indices=(1, )),
        heads=dict(cls=dict(type='ClsHead', num_classes=5, in_channels=64)),
        data_preprocessor=dict(type='ImgDataPreprocessor', mean=[128] * 3, std=[64] * 3))


@needs_cuda
def test_grouped_mm_dispatch_in_bf16_matches_a_per_expert_loop():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 64, generator=gen).cuda().bfloat16().requires_grad_()
    weight = (torch.randn(8, 64, 96, generator=gen) / 8).cuda().bfloat16().requires_grad_()
    experts = torch.randint(0, 8, (256, 2), generator=gen).cuda()
    plan = plan_dispatch(experts, torch.full((256, 2), 0.5, device='cuda'), 8)
    rows = dispatch(x, plan)
    assert _grouped_mm_supported(rows, weight)
    y = grouped_linear(rows, plan, weight)
    loop = torch.cat([xi.float() @ wi.float() for xi, wi in
                      zip(rows.split(plan.counts), weight.unbind(0))])
    torch.testing.assert_close(y.float(), loop, atol=0.05, rtol=0.02)
    y.float().square().sum().backward()
    assert torch.isfinite(weight.grad).all() and weight.grad.abs().sum() > 0


@needs_cuda
def test_moe_vit_under_bf16_autocast_follows_fp32():
    model = moe_model().cuda()
    images = torch.rand(4, 3, 32, 32, device='cuda')
    reference = model._task_features(images, ('cls', ))[0]['cls'].cls_token
    dtypes = []
    model.backbone.blocks[1].mlp.register_forward_hook(lambda m, a, out: dtypes.append(out.dtype))
    with torch.autocast('cuda', dtype=torch.bfloat16):
        feats = model._task_features(images, ('cls', ))[0]['cls']
    assert dtypes == [torch.bfloat16]  # the experts ran in bf16 (grouped_mm on CUDA)
    torch.testing.assert_close(feats.cls_token.float(), reference, atol=0.1, rtol=0.05)
    feats.cls_token.float().sum().backward()
    assert model.backbone.blocks[1].mlp.fc1_weight.grad.abs().sum() > 0


@needs_cuda
def test_task_predictor_on_cuda_matches_the_cpu():
    model = moe_model().eval()
    images = torch.rand(3, 3, 32, 32) * 255
    with torch.no_grad():
        on_cpu = TaskPredictor(model, 'cls')(images)
        on_gpu = TaskPredictor(model.cuda(), 'cls')(images.cuda())
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-4, rtol=1e-3)


def _train(rank, port, out_dir, sharded):
    os.environ.update(RANK=str(rank), WORLD_SIZE='2', MASTER_ADDR='127.0.0.1',
                      MASTER_PORT=str(port), LOCAL_RANK=str(rank))
    torch.cuda.set_device(rank)
    torch.distributed.init_process_group('nccl')
    module = moe_model().cuda()
    model = FullyShardedModel(module) if sharded else \
        MMDistributedDataParallel(module, device_ids=[rank])
    optim = OptimWrapper(torch.optim.AdamW(module.parameters(), lr=1e-3))
    gen = torch.Generator().manual_seed(rank)
    losses = []
    for _ in range(3):
        data = dict(inputs=list(torch.rand(2, 3, 32, 32, generator=gen) * 255), data_samples=[
            TaskDataSample(metainfo=dict(tasks=('cls', )), gt_label=torch.tensor(i))
            for i in range(2)])
        losses.append(float(model.train_step(data, optim)['loss']))
    torch.save(losses, out_dir / f'{sharded}{rank}')
    torch.distributed.destroy_process_group()


@needs_two_gpus
def test_fsdp_over_nccl_trains_like_ddp(tmp_path):
    for sharded in (False, True):
        with socket.socket() as sock:
            sock.bind(('127.0.0.1', 0))
            port = sock.getsockname()[1]
        mp.spawn(_train, args=(port, tmp_path, sharded), nprocs=2)
    ddp, fsdp = (torch.load(tmp_path / f'{s}0', weights_only=True) for s in (False, True))
    assert fsdp == pytest.approx(ddp, abs=1e-4)
