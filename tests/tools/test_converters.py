"""tools/model_converters: timm ViT / BEiT -> modzoo ViT, and publish_model."""
import hashlib
import importlib.util
from pathlib import Path

import pytest
import torch
import yaml
from mmengine.config import Config
from safetensors.torch import load_file, save_file
from timm.models.beit import Beit
from timm.models.vision_transformer import VisionTransformer

from modzoo.engine.checkpoint import load_from_local
from modzoo.hub import resolve
from modzoo.models.backbones.vit import ViT
from modzoo.registry import MODELS

ROOT = Path(__file__).resolve().parents[2]
ARCH = dict(embed_dim=32, depth=2, num_heads=2)


def load_tool(name):
    spec = importlib.util.spec_from_file_location(
        name, ROOT / 'tools' / 'model_converters' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


timm2modzoo = load_tool('timm2modzoo')
publish_model = load_tool('publish_model')


def modzoo_vit(state_dict, img_size, patch_size):
    vit = ViT(ARCH, img_size=img_size, patch_size=patch_size).eval()
    vit.load_state_dict(state_dict, strict=True)
    return vit


def test_timm_vit_converts_with_resampling_like_timms_filter(tmp_path):
    torch.manual_seed(0)
    source = VisionTransformer(img_size=32, patch_size=8, num_classes=5, **ARCH).eval()
    x = torch.randn(2, 3, 32, 32)
    same = modzoo_vit(timm2modzoo.convert(source.state_dict(), 32, 8), 32, 8)
    with torch.no_grad():
        torch.testing.assert_close(same(x).cls_token,
                                   source.forward_head(source.forward_features(x), True))
    # another size: what ViT's own pretrained loading (timm's checkpoint_filter_fn) gives
    torch.save({'model': source.state_dict()}, tmp_path / 'timm.pth')
    timm2modzoo.main([str(tmp_path / 'timm.pth'), str(tmp_path / 'out.safetensors'),
                      '--img-size', '48', '--patch-size', '4', '--prefix', 'backbone.'])
    converted = load_file(tmp_path / 'out.safetensors')
    assert all(key.startswith('backbone.') for key in converted)
    assert converted['backbone.pos_embed'].shape == (1, 1 + 12 * 12, 32)
    assert converted['backbone.patch_embed.proj.weight'].shape == (32, 3, 4, 4)
    reference = ViT(ARCH, img_size=48, patch_size=4, pretrained=str(tmp_path / 'timm.pth'))
    reference.init_weights()
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(converted['backbone.' + key], value)


def beit(**kwargs):
    torch.manual_seed(0)
    model = Beit(img_size=32, patch_size=8, num_classes=5, init_values=0.1, **ARCH, **kwargs)
    with torch.no_grad():  # layer scales and q/v biases far from their init
        for name, param in model.named_parameters():
            if 'gamma' in name or name.endswith(('q_bias', 'v_bias')):
                param.normal_()
    return model.eval()


def test_beit_folds_layer_scale_and_qv_bias_exactly():
    source = beit(use_abs_pos_emb=True, use_rel_pos_bias=False, global_pool='token')
    converted = timm2modzoo.convert({'state_dict': source.state_dict()}, 32, 8)
    assert not [key for key in converted if 'gamma' in key or 'q_bias' in key]
    vit = modzoo_vit(converted, 32, 8)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = source.forward_features(x)
        feats = vit(x)
    torch.testing.assert_close(feats.cls_token, tokens[:, 0])
    torch.testing.assert_close(feats.maps[-1].flatten(2).transpose(1, 2), tokens[:, 1:])


def test_beit_relative_position_bias_is_refused_unless_dropped(tmp_path):
    source = beit(use_abs_pos_emb=False, use_rel_pos_bias=True)  # mean pooling: fc_norm
    with pytest.raises(ValueError, match='relative position bias .*--drop-rel-pos-bias'):
        timm2modzoo.convert(source.state_dict(), 32, 8)
    converted = timm2modzoo.convert(source.state_dict(), 64, 8, drop_rel_pos_bias=True)
    vit = modzoo_vit(converted, 64, 8)
    assert torch.equal(vit.pos_embed, torch.zeros(1, 1 + 8 * 8, 32))
    torch.testing.assert_close(vit.norm.weight, source.fc_norm.weight)
    torch.testing.assert_close(vit.blocks[1].attn.qkv.bias[32:64], torch.zeros(32))


def test_publish_strips_training_state_and_names_files_by_hash(tmp_path, capsys):
    config = ROOT / 'configs' / 'quickstart' / 'vit-tiny_synth_mtl.py'
    model = MODELS.build(Config.fromfile(str(config)).model)
    ckpt = tmp_path / 'iter_600.pth'
    torch.save(dict(state_dict=model.state_dict(), optimizer=dict(state={}, param_groups=[]),
                    param_schedulers=[dict(last_step=600)], message_hub=dict(log_scalars={}),
                    meta=dict(cfg='model = ...', iter=600, seed=0, mmengine_version='0.10.7',
                              dataset_meta=dict(classes=['a']))), ckpt)
    publish_model.main([str(ckpt), 'vit-tiny_synth_mtl', '--out-dir', str(tmp_path / 'out'),
                        '--config', str(config), '--date', '20250102',
                        '--base-url', 'https://example.org/zoo/'])
    files = sorted((tmp_path / 'out').iterdir(), key=lambda path: path.suffix)
    assert [f.suffix for f in files] == ['.pth', '.safetensors']
    for path in files:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert path.name == f'vit-tiny_synth_mtl_20250102-{digest[:8]}{path.suffix}'
        assert resolve(str(path)) == str(path)  # the hub verifies the name's hash
    pth = load_from_local(str(files[0]))
    assert set(pth) == {'state_dict', 'meta'}
    assert pth['meta'] == dict(cfg='model = ...', mmengine_version='0.10.7',
                               dataset_meta=dict(classes=['a']))
    tensors = load_file(files[1])
    assert set(tensors) == set(model.state_dict())
    entry = yaml.safe_load(capsys.readouterr().out.split('Models:):\n')[1])[0]
    assert entry == dict(Name='vit-tiny_synth_mtl', Config=str(config),
                         Metadata=dict(Parameters=sum(p.numel() for p in model.parameters())),
                         Weights=f'https://example.org/zoo/{files[1].name}',
                         Sha256=hashlib.sha256(files[1].read_bytes()).hexdigest())


def test_publish_refuses_weights_that_do_not_fit_the_config(tmp_path):
    save_file({'head.weight': torch.zeros(2, 2)}, tmp_path / 'w.safetensors')
    with pytest.raises(RuntimeError,
                       match=r'(?s)missing keys.*backbone.blocks: #.norm1.weight \(x12\)'):
        publish_model.main([str(tmp_path / 'w.safetensors'), 'x', '--out-dir', str(tmp_path),
                            '--config', str(ROOT / 'configs' / 'quickstart' /
                                            'vit-tiny_synth_mtl.py')])
