"""tools/model_converters/modsquad_official.py: official Mod-Squad weights -> modzoo."""
from pathlib import Path

import pytest
import torch

from modzoo.registry import MODELS

from tool_runner import convert_official, load_tool

FIXTURE = Path('/work/shared/fixtures/modsquad_official_tiny.pth')
converter = load_tool('model_converters/modsquad_official.py')


@pytest.mark.skipif(not FIXTURE.exists(), reason='official Mod-Squad fixture not available')
def test_official_fixture_converts_within_1e5_and_the_floor_matters(tmp_path, capsys):
    diffs, last, model = convert_official('modsquad_official.py', FIXTURE,
                                          tmp_path / 'modsquad.pth')
    assert len(diffs) == 6 and max(diffs.values()) <= 1e-5  # features, outputs of 3 tasks
    assert last.startswith('largest difference') and float(last.split()[-3]) <= 1e-5, last
    assert list(model.heads) == ['class_object', 'depth_euclidean', 'normal']

    # without the router's probability floor the outputs move by more than the tolerance
    data = torch.load(FIXTURE, map_location='cpu', weights_only=True)
    data['config']['prob_eps'] = 0.0
    torch.save(data, tmp_path / 'no_floor.pth')
    capsys.readouterr()
    assert converter.main([str(tmp_path / 'no_floor.pth'), str(tmp_path / 'no.pth'),
                           '--verify']) == 1
    assert not (tmp_path / 'no.pth').exists()
    assert float(capsys.readouterr().out.strip().splitlines()[-1].split()[-3]) > 1e-5


def official_state(config):
    """Random weights in the official key layout of ``config`` (MTVisionTransformerMoETaskGating
    with the converter's defaults for what config leaves out)."""
    c = {**converter.DEFAULTS, **config}
    dims, tasks, patch = c['embed_dim'], c['tasks'], c['patch_size']
    head_dim = c['head_dim'] or dims // c['num_heads']
    inner, hidden = c['num_heads'] * head_dim, int(dims * c['mlp_ratio']) // c['ffd_heads']
    grid = c['img_size'] // patch
    state = dict(cls_token=(1, 1, dims), pos_embed=(1, grid * grid + 1, dims),
                 task_embedding=(1, len(tasks), dims), **{
                     'patch_embed.proj.weight': (dims, 3, patch, patch),
                     'patch_embed.proj.bias': (dims, ), 'norm.weight': (dims, ),
                     'norm.bias': (dims, ), 'fc_norm.weight': (dims, ), 'fc_norm.bias': (dims, )})
    for i in range(c['depth']):
        b = f'blocks.{i}.'
        state.update({b + 'norm1.weight': (dims, ), b + 'norm1.bias': (dims, ),
                      b + 'norm2.weight': (dims, ), b + 'norm2.bias': (dims, )})
        if not c['twice_attn'] or i % 2 == 0:
            experts, gate_rows = c['num_attn_experts'], c['num_attn_experts']
            gate_rows *= 2 if c['noisy_gating'] else 1
            state.update({b + 'attn.q_proj.experts.w': (experts, dims, head_dim),
                          b + 'attn.q_proj.output_experts.w': (experts, head_dim, dims),
                          b + 'attn.kv_proj.0.weight': (2 * head_dim, dims),
                          b + 'attn.kv_proj.0.bias': (2 * head_dim, )})
            state.update({b + f'attn.q_proj.f_gate.{t}.0.weight': (gate_rows, dims)
                          for t in range(len(tasks))})
        else:
            state.update({b + 'attn.qkv.weight': (3 * inner, dims),
                          b + 'attn.qkv.bias': (3 * inner, ),
                          b + 'attn.proj.weight': (dims, inner), b + 'attn.proj.bias': (dims, )})
        if not c['twice_mlp'] or i % 2 == 1:
            experts = c['num_ffd_experts']
            gate_rows = experts * (2 if c['ffd_noise'] else 1)
            state.update({b + 'mlp.experts.w': (experts, dims, hidden),
                          b + 'mlp.experts.b': (experts, hidden),
                          b + 'mlp.output_experts.w': (experts, hidden, dims),
                          b + 'mlp.output_experts.b': (experts, dims)})
            state.update({b + f'mlp.f_gate.{t}.0.weight': (gate_rows, dims)
                          for t in range(len(tasks))})
        else:
            state.update({b + 'mlp.fc1.weight': (4 * dims, dims),
                          b + 'mlp.fc1.bias': (4 * dims, ),
                          b + 'mlp.fc2.weight': (dims, 4 * dims), b + 'mlp.fc2.bias': (dims, )})
    for t, task in enumerate(tasks):
        if task.startswith('class'):
            state.update({f'task_heads.{t}.0.weight': (dims, ),
                          f'task_heads.{t}.0.bias': (dims, ),
                          f'task_heads.{t}.1.weight': (1000, dims),
                          f'task_heads.{t}.1.bias': (1000, )})
        else:
            channels = 3 if task == 'normal' else 1
            state.update({f'task_heads.{t}.1.weight': (patch * patch * channels, dims),
                          f'task_heads.{t}.1.bias': (patch * patch * channels, )})
    return {k: torch.randn(shape) for k, shape in state.items()}


def test_every_block_moe_with_noisy_gates_and_one_expert_mlp_converts(tmp_path, capsys):
    # the layout of mtvit_taskgate_small_att (MoA everywhere, a 1-expert routed MLP, noisy
    # gates) at a tiny size, with a task that has no modzoo head
    config = dict(tasks=['class_object', 'edge_texture', 'depth_zbuffer'], img_size=32,
                  patch_size=8, embed_dim=16, depth=2, num_heads=2, head_dim=16,
                  num_attn_experts=3, num_ffd_experts=1, ffd_heads=1, noisy_gating=True,
                  ffd_noise=True, mlp_ratio=4)
    state = official_state(config)
    torch.save(dict(state_dict=state, config=config), tmp_path / 'in.pth')
    assert converter.main([str(tmp_path / 'in.pth'), str(tmp_path / 'out.pth')]) == 0
    assert "no modzoo head for ['edge_texture']" in capsys.readouterr().out
    ckpt = torch.load(tmp_path / 'out.pth', map_location='cpu', weights_only=True)
    model = MODELS.build(ckpt['meta']['model'])
    model.load_state_dict(ckpt['state_dict'])
    names = [name for name, _ in model.backbone.moe_layers()]
    assert names == ['blocks.0.attn', 'blocks.0.mlp', 'blocks.1.attn', 'blocks.1.mlp']
    mlp = model.backbone.blocks[1].mlp
    assert mlp.num_experts == 1 and mlp.fc1_weight.shape == (1, 16, 64)
    assert mlp.router.noise_weight.shape == (3, 1, 16)  # second half of the official gate
    assert torch.equal(mlp.router.noise_weight[2], state['blocks.1.mlp.f_gate.2.0.weight'][1:])
    assert torch.equal(model.backbone.task_embedding, state['task_embedding'][0])
    assert set(model.heads) == {'class_object', 'depth_zbuffer'}


def test_bad_inputs_name_the_problem(tmp_path):
    config = dict(tasks=['class_object'], embed_dim=16, depth=2, num_heads=2, img_size=32,
                  patch_size=8, num_attn_experts=2, num_ffd_experts=2, noisy_gating=False,
                  ffd_noise=True)
    torch.save(dict(state_dict=official_state(config), config=config), tmp_path / 'in.pth')
    with pytest.raises(ValueError, match='noisy_gating=False with ffd_noise=True'):
        converter.build_converted(*converter.load_official(tmp_path / 'in.pth'), 'in.pth')
    torch.save(dict(state_dict={'x': torch.zeros(1)}), tmp_path / 'bad.pth')
    with pytest.raises(KeyError, match="official Mod-Squad state dict"):
        converter.load_official(tmp_path / 'bad.pth')
    torch.save(dict(model=official_state(config)), tmp_path / 'raw.pth')
    with pytest.raises(KeyError, match="no 'config': name the official factory with --preset"):
        converter.load_official(tmp_path / 'raw.pth')
