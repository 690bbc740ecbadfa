"""The full-size Chameleon and VTM configs: parameter counts against timm's models, the
per-task bias count, and a forward pass of the VTM size."""
from pathlib import Path

import pytest
import timm
import torch
from mmengine.config import Config

from modzoo.registry import MODELS

CONFIGS = Path(__file__).resolve().parents[2] / 'configs' / 'chameleon'


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('name, beit, vit, depth, dim', [
    ('chameleon_beitv2-l16_224px.py', 'beitv2_large_patch16_224', 'vit_large_patch16_224',
     24, 1024),
    ('vtm_beit-b16_224px.py', 'beit_base_patch16_224', 'vit_base_patch16_224', 12, 768),
])
def test_full_size_parameter_counts(name, beit, vit, depth, dim):
    cfg = Config.fromfile(CONFIGS / name).model
    with torch.device('meta'):
        model = MODELS.build(cfg)
        timm_beit = timm.create_model(beit, num_classes=0)
        timm_vit = timm.create_model(vit, num_classes=0, in_chans=1)
    per_task = depth * (6 * dim + 4 * dim)   # q, v, proj, norm1, norm2, fc2 + fc1 (4 dim)
    extra_rows = (cfg.n_tasks - 1) * per_task
    # timm's BEiT adds a final norm / fc_norm, its ViT a final norm that the encoders drop
    assert count(model.image_encoder) == count(timm_beit) - 2 * dim + extra_rows
    assert count(model.label_encoder) == count(timm_vit)
    bias_tables = sum(p.numel() for n, p in model.task_parameters()
                      if n.startswith('image_encoder.'))
    assert bias_tables == cfg.n_tasks * per_task


def test_vtm_size_forward():
    """The VTM widths at 64 px with 4 blocks per encoder (the random init of the full depth
    and the decoder's 256-channel fusion at 224 px take a minute on a loaded CPU)."""
    torch.manual_seed(0)
    cfg = Config.fromfile(CONFIGS / 'vtm_beit-b16_224px.py').model
    for enc in (cfg.image_encoder, cfg.label_encoder):
        enc.img_size, enc.out_indices = 64, [0, 1, 2, 3]
        enc.arch = dict(embed_dim=768, depth=4, num_heads=12)
    model = MODELS.build(cfg).eval()
    x_s, y_s = torch.randn(1, 1, 2, 3, 64, 64), torch.rand(1, 1, 2, 1, 64, 64)
    t = torch.tensor([[3]])
    with torch.no_grad():
        out = model.forward_episode(x_s, y_s, torch.randn(1, 1, 1, 3, 64, 64), t, t * 0)
    assert out.shape == (1, 1, 1, 1, 64, 64) and torch.isfinite(out).all()


@pytest.mark.parametrize('name', ['chameleon-tiny_synth-episodes.py',
                                  'chameleon-tiny-moevit_synth-episodes.py'])
def test_tiny_config_meta_trains_with_the_runner(tmp_path, name):
    from mmengine.runner import Runner
    cfg = Config.fromfile(CONFIGS / name)
    cfg.work_dir = str(tmp_path)
    cfg.train_dataloader.dataset.update(num_scenes=24, shot=2, query=2, channels=2)
    cfg.train_cfg.max_iters = 2
    cfg.param_scheduler = []
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    scalars = runner.message_hub.log_scalars
    assert 'train/loss' in scalars and torch.isfinite(torch.tensor(scalars['train/loss'].current()))
