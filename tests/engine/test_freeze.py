"""Freezing by name, and the fine-tuning recipes of configs/finetune/ trained for a few steps."""
import re
from pathlib import Path

import huggingface_hub
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from modzoo.datasets.synth import generate_synth_scenes
from modzoo.engine.freeze import freeze, parameter_counts

ROOT = Path(__file__).resolve().parents[2]


class Net(nn.Module):

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3))
        self.head = nn.Linear(3, 1)


def trainable_names(model):
    return sorted(name for name, p in model.named_parameters() if p.requires_grad)


def test_freeze_patterns():
    net = Net()
    freeze(net, frozen=['backbone.*'], trainable=['*.bias'])
    assert trainable_names(net) == ['backbone.0.bias', 'backbone.1.bias', 'head.bias',
                                    'head.weight']
    assert parameter_counts(net) == (3 + 3 + 1 + 3, 6 + 3 + 3 + 3 + 3 + 1)
    freeze(net, trainable=['head.*'])  # frozen defaults to everything else
    assert trainable_names(net) == ['head.bias', 'head.weight']
    freeze(net, trainable=['*'])  # nothing is ever unfrozen
    assert trainable_names(net) == ['head.bias', 'head.weight']
    freeze(net)  # no patterns: nothing changes
    assert trainable_names(net) == ['head.bias', 'head.weight']


def test_a_pattern_that_matches_nothing_is_named():
    with pytest.raises(ValueError, match=r"freeze pattern 'backbone.prompts.\*' matches no "
                                         r'parameter of Net; its names look like backbone.0'):
        freeze(Net(), trainable=['backbone.prompts.*'])


@pytest.fixture(scope='module')
def finetune_env(tmp_path_factory):
    """Tiny SynthScenes (64 px) and an offline Hugging Face cache that holds a random
    timm-layout ViT-Tiny/16 as `timm:vit_tiny_patch16_224.augreg_in21k_ft_in1k`."""
    root = tmp_path_factory.mktemp('finetune')
    data = generate_synth_scenes(str(root / 'synth'), num_train=8, num_val=2, size=64, seed=0,
                                 workers=1, progress=False)
    torch.manual_seed(0)
    timm_vit = VisionTransformer(embed_dim=192, depth=12, num_heads=3, num_classes=10)
    snapshot = (root / 'hf' / 'models--timm--vit_tiny_patch16_224.augreg_in21k_ft_in1k' /
                'snapshots' / ('0' * 40))
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / 'refs').mkdir()
    (snapshot.parents[1] / 'refs' / 'main').write_text('0' * 40)
    save_file(timm_vit.state_dict(), snapshot / 'model.safetensors')
    return data, str(root / 'hf'), timm_vit.state_dict()


class Snapshot(Hook):
    """The model's parameters when training starts (after the pretrained init)."""

    def before_train(self, runner):
        self.params = {name: p.detach().clone() for name, p in runner.model.named_parameters()}


def train_recipe(recipe, env, work_dir, monkeypatch, iters=1):
    data, hf_cache, _ = env
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_CACHE', hf_cache)
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    cfg = Config.fromfile(str(ROOT / 'configs' / 'finetune' / f'{recipe}.py'))
    cfg.work_dir = str(work_dir)
    cfg.train_dataloader.update(batch_size=4, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.dataset.data_root = data
    cfg.train_cfg.update(max_iters=iters, val_interval=iters + 1)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint = None
    runner = Runner.from_cfg(cfg)
    snapshot = Snapshot()
    runner.register_hook(snapshot, priority='LOWEST')
    runner.train()
    log = next(Path(runner.log_dir).glob('*.log')).read_text()
    return runner.model, snapshot.params, log


@pytest.mark.parametrize('recipe, trainable', [
    ('vit-tiny-p8_in21k-pre_bitfit_synth-normals', r'^backbone\..*\.bias$|^heads\.'),
    ('vit-tiny-p8_in21k-pre_vpt-deep_synth-normals', r'^backbone\.prompts\.|^heads\.'),
])
def test_frozen_parameters_do_not_change_in_training(finetune_env, tmp_path, monkeypatch,
                                                     recipe, trainable):
    model, before, log = train_recipe(recipe, finetune_env, tmp_path, monkeypatch)
    # the timm weights were loaded (resampled) before training
    torch.testing.assert_close(before['backbone.blocks.3.mlp.fc1.weight'],
                               finetune_env[2]['blocks.3.mlp.fc1.weight'])
    moved = set()
    for name, param in model.named_parameters():
        assert param.requires_grad == bool(re.search(trainable, name)), name
        if param.requires_grad:
            moved.update([name] if not torch.equal(param, before[name]) else [])
        else:
            assert torch.equal(param, before[name]), f'frozen {name} changed'
    assert 'heads.normals.conv_out.weight' in moved
    assert any(name.startswith('backbone.') for name in moved)
    counts = re.search(r'trainable parameters: ([\d,]+) of ([\d,]+)', log)
    assert counts, 'the trainable / total parameter counts are not in the log'
    expected = [sum(p.numel() for p in model.parameters() if p.requires_grad),
                sum(p.numel() for p in model.parameters())]
    assert [int(c.replace(',', '')) for c in counts.groups()] == expected
