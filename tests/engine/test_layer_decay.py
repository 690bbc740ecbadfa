"""Layer-wise learning-rate decay: each parameter's lr against hand-computed values."""
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.optim.scheduler import LinearLR
from mmengine.registry import DefaultScope
from torch import nn

from modzoo.engine.optimizers import LayerDecayOptimWrapperConstructor, layer_ids
from modzoo.models.backbones.vit import ViT
from modzoo.registry import MODELS

ROOT = Path(__file__).resolve().parents[2]


class TwoBlockModel(nn.Module):
    """ViT of depth 2 (layers: 0 stem, 1 block 0, 2 block 1 + final norm) and a head (3)."""

    def __init__(self):
        super().__init__()
        self.backbone = ViT(dict(embed_dim=16, depth=2, num_heads=2), img_size=16, patch_size=8)
        self.heads = nn.ModuleDict(dict(cls=nn.Linear(16, 3)))


def lrs(optim_wrapper, model):
    """{parameter name: (lr, weight_decay)} of the optimizer's groups."""
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(g['params'][0])]: (g['lr'], g['weight_decay'])
            for g in optim_wrapper.optimizer.param_groups}


def build(model, **paramwise_cfg):
    return LayerDecayOptimWrapperConstructor(
        dict(optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.1)), paramwise_cfg)(model)


def test_layer_ids_follow_timm_group_matcher():
    ids, last = layer_ids(TwoBlockModel())
    assert last == 3
    assert ids['backbone.pos_embed'] == ids['backbone.patch_embed.proj.weight'] == 0
    assert ids['backbone.blocks.0.attn.qkv.weight'] == 1
    assert ids['backbone.blocks.1.mlp.fc2.bias'] == ids['backbone.norm.weight'] == 2


def test_each_layer_gets_its_scale_and_mmengine_rules_still_apply():
    model = TwoBlockModel()
    got = lrs(build(model, layer_decay_rate=0.5, norm_decay_mult=0.0,
                    custom_keys={'heads.cls.bias': dict(lr_mult=10)}), model)
    assert got['backbone.cls_token'] == (0.125, 0.1)
    assert got['backbone.patch_embed.proj.weight'] == (0.125, 0.1)
    assert got['backbone.blocks.0.attn.proj.weight'] == (0.25, 0.1)
    assert got['backbone.blocks.0.norm1.weight'] == (0.25, 0.0)  # norm_decay_mult
    assert got['backbone.blocks.1.mlp.fc1.bias'] == (0.5, 0.1)
    assert got['backbone.norm.bias'] == (0.5, 0.0)
    assert got['heads.cls.weight'] == (1.0, 0.1)
    assert got['heads.cls.bias'] == (10.0, 0.1)  # custom_keys lr_mult, times scale 1
    assert len(got) == len(list(model.parameters()))


def test_frozen_parameters_stay_out_and_schedulers_keep_the_ratios():
    model = TwoBlockModel()
    optim_wrapper = build(model, layer_decay_rate=0.5,
                          trainable=['backbone.blocks.1.*', 'heads.*'])
    got = lrs(optim_wrapper, model)
    assert {name.split('.')[1] for name in got} == {'blocks', 'cls'}
    assert not model.backbone.blocks[0].attn.qkv.weight.requires_grad
    LinearLR(optim_wrapper.optimizer, start_factor=0.1, by_epoch=False, end=10)
    scaled = lrs(optim_wrapper, model)
    assert scaled['backbone.blocks.1.attn.qkv.weight'][0] == pytest.approx(0.05)
    assert scaled['heads.cls.weight'][0] == pytest.approx(0.1)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match='layer_decay_rate must be a number in \\(0, 1\\], got 0'):
        build(TwoBlockModel(), layer_decay_rate=0)
    model = nn.Module()
    model.backbone = nn.Linear(2, 2)
    with pytest.raises(TypeError, match='Module.backbone to have a timm-style group_matcher; '
                                        'it is Linear'):
        build(model, layer_decay_rate=0.5)


def test_the_layer_decay_recipe():
    cfg = Config.fromfile(str(ROOT / 'configs' / 'finetune' /
                              'vit-tiny-p8_in21k-pre_layer-decay_synth-normals.py'))
    model = MODELS.build(cfg.model)
    with DefaultScope.overwrite_default_scope('modzoo'):
        got = lrs(build_optim_wrapper(model, cfg.optim_wrapper), model)
    assert got['backbone.pos_embed'][0] == pytest.approx(5e-4 * 0.75 ** 13)
    assert got['backbone.blocks.11.mlp.fc1.weight'][0] == pytest.approx(5e-4 * 0.75)
    assert got['heads.normals.conv_out.weight'][0] == pytest.approx(5e-4)
