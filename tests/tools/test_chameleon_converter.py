"""tools/model_converters/chameleon_official.py: official Chameleon weights -> modzoo."""
import re
from pathlib import Path

import pytest
import torch

from modzoo.registry import MODELS

from tool_runner import convert_official, load_tool

FIXTURE = Path('/work/shared/fixtures/chameleon_official_tiny.pth')
converter = load_tool('model_converters/chameleon_official.py')


@pytest.mark.skipif(not FIXTURE.exists(), reason='official Chameleon fixture not available')
def test_official_fixture_converts_with_parity(tmp_path):
    diffs, last, model = convert_official('chameleon_official.py', FIXTURE,
                                          tmp_path / 'chameleon.pth')
    assert set(diffs) == {'Y_Q_pred'} and diffs['Y_Q_pred'] <= 1e-4
    assert float(re.search(r'= (\S+)', last)[1]) == diffs['Y_Q_pred']   # on the last line
    assert model.n_tasks == 3 and model.image_encoder.embed_dim == 192


def to_official(state_dict):
    """modzoo ``Chameleon`` keys -> the official ones (the inverse of the converter's table),
    with the official extras: the rebuilt index buffers and the pre_ln_k twin."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith('label_encoder.norm.'):
            continue                         # the official label encoder has no final norm
        new = re.sub(r'^image_encoder\.', 'image_encoder.backbone.', key)
        new = re.sub(r'^label_encoder\.', 'label_encoder.backbone.', new)
        new = re.sub(r'^matching\.', 'matching_module.', new)
        new = re.sub(r'^decoder\.fusion_blocks\.(\d+)\.residual(\d)',
                     r'label_decoder.fusion_blocks.\1.resConfUnit\2', new)
        new = re.sub(r'^decoder\.head_conv1', 'label_decoder.head.0', new)
        new = re.sub(r'^decoder\.head_conv2', 'label_decoder.head.2', new)
        new = re.sub(r'^decoder\.head_out', 'label_decoder.head.4', new)
        new = re.sub(r'^decoder\.', 'label_decoder.', new)
        if '.pre_ln.' in new:
            out['model.' + new.replace('.pre_ln.', '.pre_ln_k.')] = value.half()
            new = new.replace('.pre_ln.', '.pre_ln_q.')
        out['model.' + new] = value.half()       # Lightning prefix, float16 storage
    return out


def test_other_sizes_are_read_from_the_weights():
    """Two input images, a 6-block encoder, 5 bias sets, separate alphas, 48 px, patch 8."""
    torch.manual_seed(0)
    cfg = dict(
        type='Chameleon', n_tasks=5, n_task_groups=1, separate_alpha=True,
        image_encoder=dict(type='BiasSetBEiT', arch=dict(embed_dim=32, depth=8, num_heads=4),
                           img_size=48, patch_size=8, out_indices=[1, 3, 5, 7],
                           n_input_images=2, init_values=0.1),
        label_encoder=dict(type='ViT', arch=dict(embed_dim=16, depth=4, num_heads=2),
                           img_size=48, patch_size=8, out_indices=[0, 1, 2, 3],
                           final_norm=False),
        matching=dict(type='TokenMatching', num_heads=2),
        decoder=dict(type='DPTLabelDecoder', hidden_channels=[8, 8, 16, 16], features=16))
    ours = MODELS.build(cfg).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.copy_(p.half().float())            # values float16 can hold exactly
    official = to_official(ours.state_dict())
    for i in range(8):
        official[f'model.image_encoder.backbone.blocks.{i}.attn.relative_position_index'] = \
            ours.image_encoder.blocks[i].attn.relative_position_index
    data = dict(state_dict=official,
                config=dict(separate_alpha=True, n_attn_heads=2,
                            label_encoder=dict(num_heads=2)))
    data['state_dict'] = {k[len('model.'):]: v for k, v in official.items()}
    model, built = converter.build_converted(data, 'official.pth')
    enc = built['image_encoder']
    assert enc['n_input_images'] == 2 and enc['img_size'] == (48, 48)
    assert enc['out_indices'] == [1, 3, 5, 7] and built['n_tasks'] == 5
    g = torch.Generator().manual_seed(1)
    x_s, x_q = torch.randn(1, 2, 2, 6, 48, 48, generator=g), torch.randn(1, 2, 1, 6, 48, 48)
    y_s, t = torch.rand(1, 2, 2, 1, 48, 48, generator=g), torch.tensor([[4, 1]])
    with torch.no_grad():
        a = ours.forward_episode(x_s, y_s, x_q, t, t)
        b = model.forward_episode(x_s, y_s, x_q, t, t)
    torch.testing.assert_close(a, b)


def test_missing_keys_and_unshared_pre_ln_are_named(tmp_path):
    path = tmp_path / 'bad.pth'
    torch.save(dict(state_dict={'image_encoder.backbone.cls_token': torch.zeros(1, 1, 8)}), path)
    with pytest.raises(KeyError, match='lacks'):
        converter.load_official(str(path))
    sd = {'matching_module.matching.0.pre_ln_q.weight': torch.ones(4),
          'matching_module.matching.0.pre_ln_k.weight': torch.zeros(4)}
    with pytest.raises(ValueError, match='pre_ln_k'):
        converter.convert_state_dict(sd)
