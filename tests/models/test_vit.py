import pytest
import torch
from einops import rearrange
from mmengine.model import BaseModule
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed, resample_patch_embed
from timm.models.vision_transformer import VisionTransformer

from modzoo.models.backbones.vit import ViT
from modzoo.registry import MODELS
from modzoo.weights import CheckpointMismatchError

ARCH = dict(embed_dim=32, depth=3, num_heads=2)


def timm_vit(img_size=32, patch_size=8, global_pool='token', **kwargs):
    """A random (by default cls-pooled) timm ViT of the test size."""
    torch.manual_seed(0)
    return VisionTransformer(img_size=img_size, patch_size=patch_size, num_classes=5,
                             global_pool=global_pool, **ARCH, **kwargs).eval()


def save_timm(tmp_path, model, wrap=None, name='vit.pth'):
    state_dict = model.state_dict()
    path = str(tmp_path / name)
    if name.endswith('.safetensors'):
        save_file(state_dict, path)
    else:
        torch.save({wrap: state_dict} if wrap else state_dict, path)
    return path


def test_build_and_shapes_for_any_multiple_of_the_patch():
    vit = MODELS.build(dict(type='ViT', arch=ARCH, img_size=32, patch_size=8,
                            out_indices=(0, -1)))
    feats = vit(torch.randn(2, 3, 48, 24))
    assert [tuple(m.shape) for m in feats.maps] == [(2, 32, 6, 3), (2, 32, 6, 3)]
    assert feats.cls_token.shape == (2, 32)
    assert feats.aux_losses is None
    assert vit.out_indices == (0, 2)


def test_presets_match_timm_sizes():
    vit = ViT('small', img_size=32, patch_size=16)
    assert (vit.embed_dim, len(vit.blocks), vit.blocks[0].attn.num_heads) == (384, 12, 6)


def test_matches_timm_at_equal_size(tmp_path):
    ref = timm_vit()
    vit = ViT(ARCH, img_size=32, patch_size=8, out_indices=(1, 2),
              pretrained=save_timm(tmp_path, ref))
    vit.init_weights()
    vit.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = vit(x)
        tokens = ref.forward_features(x)
        cls = ref.forward_head(tokens, pre_logits=True)
        inter = ref.forward_intermediates(x, indices=[1], intermediates_only=True)[0]
    torch.testing.assert_close(feats.cls_token, cls, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats.maps[-1],
                               rearrange(tokens[:, 1:], 'b (h w) d -> b d h w', h=4),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats.maps[0], inter, atol=1e-5, rtol=1e-5)


def test_final_norm_false_keeps_last_map_raw_but_normalises_cls():
    ref = timm_vit()
    vit = ViT(ARCH, img_size=32, patch_size=8, final_norm=False)
    vit.load_state_dict(ref.state_dict(), strict=False)
    vit.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        feats = vit(x)
        raw = ref.forward_intermediates(x, indices=[2], intermediates_only=True)[0]
        cls = ref.forward_head(ref.forward_features(x), pre_logits=True)
    torch.testing.assert_close(feats.maps[0], raw, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats.cls_token, cls, atol=1e-5, rtol=1e-5)


def test_without_cls_token():
    vit = ViT(ARCH, img_size=32, patch_size=8, with_cls_token=False)
    feats = vit(torch.randn(1, 3, 16, 32))
    assert feats.cls_token is None and feats.maps[0].shape == (1, 32, 2, 4)
    assert vit.pos_embed.shape == (1, 16, 32)


def test_gradients_reach_every_parameter_on_a_new_size():
    vit = ViT(ARCH, img_size=32, patch_size=8, out_indices=(0, 1, 2), drop_path_rate=0.1)
    feats = vit(torch.randn(2, 3, 40, 24))
    (sum(m.mean() for m in feats.maps) + feats.cls_token.mean()).backward()
    assert all(p.grad is not None for p in vit.parameters())


def test_pretrained_resamples_pos_embed_to_config_size(tmp_path):
    ref = timm_vit(img_size=32)
    path = save_timm(tmp_path, ref, wrap='model')
    vit = ViT(ARCH, img_size=48, patch_size=8, pretrained=path)
    assert not vit.is_init
    vit.init_weights()
    expected = resample_abs_pos_embed(ref.pos_embed.detach(), new_size=(6, 6), old_size=(4, 4),
                                      num_prefix_tokens=1)
    torch.testing.assert_close(vit.pos_embed.detach(), expected)
    torch.testing.assert_close(vit.blocks[2].mlp.fc2.weight, ref.blocks[2].mlp.fc2.weight)
    assert vit.is_init


def test_pretrained_resamples_patch_embed_to_patch_size(tmp_path):
    ref = timm_vit(img_size=32, patch_size=8)
    path = save_timm(tmp_path, ref, name='vit.safetensors')
    vit = ViT(ARCH, img_size=32, patch_size=4, init_cfg=dict(type='Pretrained', checkpoint=path))
    vit.init_weights()
    expected = resample_patch_embed(ref.patch_embed.proj.weight.detach(), [4, 4])
    torch.testing.assert_close(vit.patch_embed.proj.weight.detach(), expected)
    assert vit.pos_embed.shape == (1, 65, 32)


def test_pretrained_through_a_parent_init_weights_with_prefix(tmp_path):
    class Wrapper(BaseModule):
        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone

    ref = timm_vit()
    path = str(tmp_path / 'zoo.pth')
    torch.save({'state_dict': {'backbone.' + k: v for k, v in ref.state_dict().items()}}, path)
    model = Wrapper(ViT(ARCH, img_size=32, patch_size=8,
                        init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.')))
    model.init_weights()
    torch.testing.assert_close(model.backbone.cls_token, ref.cls_token)


def test_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        ViT(ARCH, img_size=32, patch_size=8,
            pretrained=str(tmp_path / 'nowhere.pth')).init_weights()
    state_dict = timm_vit().state_dict()
    del state_dict['blocks.1.attn.qkv.weight']
    path = str(tmp_path / 'partial.pth')
    torch.save(state_dict, path)
    with pytest.raises(CheckpointMismatchError, match='missing.*\n  blocks.1: attn.qkv.weight'):
        ViT(ARCH, img_size=32, patch_size=8, pretrained=path).init_weights()
    with pytest.raises(RuntimeError, match='partial.pth'):
        ViT(dict(ARCH, embed_dim=64), img_size=32, patch_size=8, pretrained=path).init_weights()
    with pytest.raises(CheckpointMismatchError, match="prefix 'backbone.'"):
        ViT(ARCH, img_size=32, patch_size=8,
            init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.')).init_weights()


@pytest.mark.parametrize('kwargs, match', [
    (dict(arch='huge'), "arch 'huge'"),
    (dict(arch=dict(embed_dim=32, depth=2)), 'num_heads'),
    (dict(arch=ARCH, out_indices=(3,)), r'out_indices \(3,\)'),
    (dict(arch=ARCH, init_cfg=dict(type='Normal')), 'Pretrained'),
    (dict(arch=ARCH, pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='b.pth')),
     'either pretrained or init_cfg'),
])
def test_bad_arguments_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ViT(img_size=32, patch_size=8, **kwargs)


def test_global_pool_avg_matches_timm_and_keeps_the_normed_maps():
    ref = timm_vit(global_pool='avg', fc_norm=True)   # timm: fc_norm on the mean patch token
    vit = ViT(ARCH, img_size=32, patch_size=8, global_pool='avg')
    state = ref.state_dict()
    missing, _ = vit.load_state_dict(state, strict=False)
    assert missing == ['norm.weight', 'norm.bias']   # timm drops norm for avg pooling
    vit.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = vit(x)
        tokens = ref.forward_features(x)
        pooled = ref.forward_head(tokens, pre_logits=True)
    torch.testing.assert_close(feats.cls_token, pooled, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats.maps[-1].flatten(2).transpose(1, 2),
                               vit.norm(tokens)[:, 1:], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="global_pool must be 'token' or 'avg', got 'max'"):
        ViT(ARCH, global_pool='max')
