import pytest
import torch

from modzoo.registry import MODELS
from modzoo.structures import Features


@pytest.mark.parametrize('backbone', [
    dict(type='ViT', arch='tiny', img_size=64, patch_size=16),
    dict(type='MoEViT', arch='tiny', img_size=64, patch_size=16, tasks=['det'],
         moa_experts=6, mlp_experts=4, mlp_top_k=2),
    dict(type='VisualPromptViT', arch='tiny', img_size=64, patch_size=16, num_prompts=2),
])
def test_strides_4_to_64_from_every_vit(backbone):
    torch.manual_seed(0)
    vit = MODELS.build(backbone)
    neck = MODELS.build(dict(type='SimpleFeaturePyramid', in_channels=192, out_channels=32))
    feats = vit(torch.randn(2, 3, 128, 64), 'det')
    maps = neck(feats).maps
    assert [tuple(m.shape) for m in maps] == [(2, 32, 128 // s, 64 // s)
                                              for s in (4, 8, 16, 32, 64)]
    maps[0].sum().backward()  # the stride-4 level reaches the backbone
    assert vit.patch_embed.proj.weight.grad.abs().sum() > 0


def test_scale_factors_and_widths():
    neck = MODELS.build(dict(type='SimpleFeaturePyramid', in_channels=64, out_channels=8,
                             scale_factors=(2.0, 1.0, 0.25), top_pool=False))
    maps = neck(Features(maps=(torch.randn(1, 64, 8, 8), ))).maps
    assert [m.shape[-1] for m in maps] == [16, 8, 2]
    # scale 2: one 2x2 transposed conv 64 -> 32, then the 1x1 conv 32 -> 8
    assert neck.levels[0][0][0].weight.shape == (64, 32, 2, 2)
    assert neck.levels[0][1].weight.shape == (8, 32, 1, 1)
    with pytest.raises(ValueError, match='powers of 2'):
        MODELS.build(dict(type='SimpleFeaturePyramid', in_channels=64, scale_factors=(3.0, )))
