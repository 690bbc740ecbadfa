"""tools/model_converters/multilane_official.py: official MULTI-LANE weights -> modzoo."""
from pathlib import Path

import pytest
import timm
import torch

from modzoo.registry import MODELS

from tool_runner import convert_official, load_tool

FIXTURE = Path('/work/shared/fixtures/multilane_official_vit-tiny_t4.pth')
converter = load_tool('model_converters/multilane_official.py')


@pytest.mark.skipif(not FIXTURE.exists(), reason='official MULTI-LANE fixture not available')
def test_official_fixture_converts_with_parity(tmp_path):
    diffs, last, model = convert_official('multilane_official.py', FIXTURE,
                                          tmp_path / 'multilane.pth')
    assert set(diffs) == {'logits', 'pathway_cls'}
    assert all(d <= 1e-4 for d in diffs.values()), diffs
    assert model.task_id == 3 and model.backbone.vit.embed_dim == 192


def official_layout(num_tasks=5, num_selectors=3, num_prompts=4, num_prompt_layers=2,
                    num_classes=10, head_mode='task'):
    """A random state dict in the official layout: a small timm ViT's keys (the official model
    is a timm ViT fork) plus selectors, per-block prompts, head and identifier keys."""
    vit = timm.create_model('vit_tiny_patch16_224', num_classes=0, img_size=32, patch_size=8,
                            embed_dim=64, depth=3, num_heads=2, mlp_ratio=2.)
    state = {k: v.half() for k, v in vit.state_dict().items()}
    state['selectors'] = torch.randn(num_tasks, num_selectors, 64).half()
    for i in range(num_prompt_layers):
        state[f'blocks.{i}.attn.prompts'] = torch.randn(2, num_tasks, num_prompts, 2, 32).half()
    state['head.weight'] = torch.randn(num_classes, 64).half()
    state['head.bias'] = torch.randn(num_classes).half()
    if head_mode == 'task':
        state['task_identifier.keys'] = torch.randn(num_tasks, 64).half()
    config = dict(model='vit_tiny_patch16_224', num_tasks=num_tasks, t=2,
                  num_selectors=num_selectors, num_prompts=num_prompts,
                  num_prompt_layers=num_prompt_layers, normalize='none', head_mode=head_mode,
                  num_classes=num_classes, drop_and_replace=False)
    class_mask = [[2 * t, 2 * t + 1] for t in range(num_tasks)]
    return dict(state_dict=state, config=config, class_mask=class_mask)


def test_other_configuration_loads_strictly(tmp_path):
    src, out = tmp_path / 'official.pth', tmp_path / 'out.pth'
    official = official_layout()
    torch.save(official, src)
    assert converter.main([str(src), str(out)]) == 0

    ckpt = torch.load(out, map_location='cpu', weights_only=True)
    cfg = ckpt['meta']['model']
    assert cfg['backbone']['vit_cfg'] == dict(embed_dim=64, depth=3, patch_size=8, in_chans=3,
                                              img_size=32, mlp_ratio=2., qkv_bias=True,
                                              num_heads=2)
    assert cfg['backbone']['drop_and_replace'] is False
    assert cfg['head']['mode'] == 'task' and cfg['head']['normalize'] is False
    model = MODELS.build(cfg)
    model.load_state_dict(ckpt['state_dict'])                       # strict
    assert model.task_id == 2
    assert model.backbone.selectors.tokens.shape == (5, 3, 64)
    assert [p.kv.shape for p in model.backbone.prompts] == [(2, 5, 4, 2, 32)] * 2
    torch.testing.assert_close(model.head.keys, official['state_dict']['task_identifier.keys']
                               .float())
    torch.testing.assert_close(model.backbone.vit.blocks[2].mlp.fc1.weight,
                               official['state_dict']['blocks.2.mlp.fc1.weight'].float())
    with torch.no_grad():
        assert model.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_verify_fails_and_writes_nothing_above_tolerance(tmp_path, capsys):
    official = official_layout()
    official['input'] = torch.rand(2, 3, 32, 32)
    official['logits'] = torch.zeros(2, 10)                 # not what these weights give
    src, out = tmp_path / 'official.pth', tmp_path / 'out.pth'
    torch.save(official, src)
    assert converter.main([str(src), str(out), '--verify']) == 1
    assert not out.exists() and 'not written' in capsys.readouterr().out


def test_inconsistent_or_incomplete_files_are_rejected(tmp_path):
    src, out = tmp_path / 'official.pth', tmp_path / 'out.pth'
    official = official_layout(head_mode='concat')
    official['config']['num_prompt_layers'] = 3
    torch.save(official, src)
    with pytest.raises(ValueError, match='prompts in 2 blocks'):
        converter.main([str(src), str(out)])

    official['config']['num_prompt_layers'] = 2
    torch.save(official, src)
    with pytest.raises(KeyError, match="--verify needs \\['input', 'logits'\\]"):
        converter.main([str(src), str(out), '--verify'])

    official['state_dict']['head.bias'] = torch.zeros(3)
    torch.save(official, src)
    with pytest.raises(RuntimeError, match='(?s)official.pth: .*head.fc.bias'):
        converter.main([str(src), str(out)])

    del official['class_mask']
    torch.save(official, src)
    with pytest.raises(KeyError, match="missing \\['class_mask'\\]"):
        converter.main([str(src), str(out)])
    assert not out.exists()
