"""tools/analysis/memory.py: the per-GPU memory plan of a config."""
import pytest
import torch
from mmengine.config import Config

from tool_runner import QUICKSTART, REPO, load_tool

memory = load_tool('analysis/memory.py')


def small_quickstart():
    cfg = Config.fromfile(QUICKSTART)
    cfg.model.backbone.update(arch=dict(embed_dim=32, depth=2, num_heads=2), out_indices=(0, 1),
                              img_size=32)
    for head in cfg.model.heads.values():
        head.update(in_channels=32, **({'in_index': (0, 1)} if 'in_index' in head else {}))
    return cfg


def test_meta_forward_counts_what_a_cpu_forward_saves(monkeypatch):
    cfg = small_quickstart()
    on_meta = memory.activation_bytes(cfg, (32, 32), checkpointing=False)
    build = memory.build
    monkeypatch.setattr(memory, 'build', lambda cfg, device, dtype: build(cfg, 'cpu', dtype))
    monkeypatch.setattr(torch, 'rand', lambda *size, device, dtype: torch.randn(*size))
    on_cpu = memory.activation_bytes(cfg, (32, 32), checkpointing=False)
    assert set(on_meta) == set(on_cpu) == {'cls', 'semseg', 'depth', 'multilabel'}
    for task, saved in on_cpu.items():  # the attention kernel saves a little more on meta
        assert saved <= on_meta[task] <= 1.2 * saved
    # a ViT block saves at least its input and the attention's q, k, v [N, D] per image
    assert on_meta['cls'] > 2 * 4 * 4 * 17 * 32


def test_fsdp_divides_the_states_and_checkpointing_the_activations():
    cfg = small_quickstart()
    ddp = memory.estimate(cfg, gpus=4, strategy='ddp', batch_size=8)
    fsdp = memory.estimate(cfg, gpus=4, strategy='fsdp', batch_size=8,
                           activation_checkpointing=True)
    params = ddp['parameters']
    assert params == sum(p.numel() for p in memory.MODELS.build(cfg.model).parameters())
    assert ddp['params_gib'] == ddp['grads_gib'] == 4 * params / 2 ** 30
    assert ddp['optimizer_gib'] == 2 * 4 * params / 2 ** 30  # AdamW: 2 states
    assert fsdp['params_gib'] == ddp['params_gib'] / 4
    assert 0 < fsdp['activations_gib'] < ddp['activations_gib']
    double = memory.estimate(cfg, gpus=4, strategy='ddp', batch_size=16)
    assert double['activations_gib'] == pytest.approx(2 * ddp['activations_gib'])
    assert ddp['fits'] == {'24GB': True, '40GB': True, '80GB': True}


def test_moe_config_is_measured_on_the_cpu(capsys):
    result = memory.main([f'{REPO}/configs/moe_vit/moe-vit-tiny_synth_hetero.py', '--gpus', '2',
                          '--strategy', 'fsdp', '--json', '--cfg-options',
                          'model.backbone.img_size=32'])
    assert result['activations_gib'] > 0 and 'measuring on the CPU' in capsys.readouterr().out
