"""Chameleon's image encoders with bias sets (BiasSetBEiT, ViT, MoEViT): episodes, bias tuning
of one task's rows, few-shot growth, and a MoEViT whose outputs do not change when its bias
sets are not used."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from test_chameleon import episode, tiny_cfg

from modzoo.models.chameleon_adaptation import add_task, finetune
from modzoo.registry import MODELS

CONFIGS = Path(__file__).resolve().parents[2] / 'configs' / 'chameleon'
VIT = dict(type='ViT', arch=dict(embed_dim=32, depth=4, num_heads=2), img_size=32,
           patch_size=8, out_indices=[0, 1, 2, 3], final_norm=False)
# the "twice" layout: MoA in blocks 0 and 2, MoE MLP in 1 and 3; MI loss on
MOE_VIT = dict(VIT, type='MoEViT', moa_experts=4, mlp_experts=4, mlp_top_k=2, mi_weight=0.01)


def tiny_cfg_with(encoder, **kw):
    cfg = tiny_cfg(**kw)
    cfg['image_encoder'] = encoder
    return cfg


def loss_episode(T=2):
    ep = episode(T=T)
    ep.update(y_q=torch.rand(1, T, 2, 1, 32, 32, generator=torch.Generator().manual_seed(1)),
              loss_type=torch.tensor([[0, 1][:T]]))
    return ep


@pytest.fixture(params=[None, VIT, MOE_VIT], ids=['BiasSetBEiT', 'ViT', 'MoEViT'])
def model(request):
    torch.manual_seed(0)
    model = MODELS.build(tiny_cfg_with(request.param) if request.param else tiny_cfg())
    with torch.no_grad():          # bias rows start equal: make every row distinct
        for _, p in model.task_parameters():
            p.normal_(0, 0.1)
    return model


def test_episode_forward_and_task_rows_matter(model):
    model.eval()
    ep = episode()
    with torch.no_grad():
        out = model.forward_episode(ep['x_s'], ep['y_s'], ep['x_q'], ep['t_idx'], ep['g_idx'])
        other = model.forward_episode(ep['x_s'], ep['y_s'], ep['x_q'], ep['t_idx'] + 2,
                                      ep['g_idx'])
    assert out.shape == (1, 2, 2, 1, 32, 32) and torch.isfinite(out).all()
    assert not torch.allclose(out, other)
    # each block's norm1/norm2 and dense Linear biases are tables of 4 rows (one per task)
    tables = [n for n, p in model.task_parameters() if n.startswith('image_encoder.')
              and n.endswith('bias')]
    assert all(model.get_parameter(n).shape[0] == 4 for n in tables)
    assert {n.split('.')[-2] for n in tables} >= {'norm1', 'norm2', 'proj', 'fc1', 'fc2'}
    assert {'matching.layernorm.weight', 'matching.layernorm.bias'} <= dict(
        model.task_parameters()).keys()


def test_bias_tuning_changes_only_the_selected_rows(model):
    params = dict(model.task_parameters())
    before = {n: p.detach().clone() for n, p in params.items()}
    opt = torch.optim.AdamW(params.values(), lr=1e-2, weight_decay=0.)
    ep = loss_episode(T=1)
    ep['t_idx'][:] = 2
    ep['g_idx'][:] = 1
    losses = model(ep, mode='loss')
    if model.image_encoder.__class__.__name__ == 'MoEViT':
        assert 'loss_moe_mi' in losses   # the encoder's aux losses join the episode's
    sum(losses.values()).backward()
    opt.step()
    routers = [n for n in params if '.router.' in n]
    assert bool(routers) == (model.image_encoder.__class__.__name__ == 'MoEViT')
    for name, p in params.items():
        if name.startswith('matching.layernorm'):
            continue
        row = 1 if name.startswith('matching.alpha') else 2
        keep = [r for r in range(p.shape[0]) if r != row]
        assert torch.equal(p[keep], before[name][keep]), name
        assert not torch.equal(p[row], before[name][row]), name


def test_moevit_routes_each_sample_by_its_task():
    """A batch of mixed tasks gives, sample by sample, what one pass per task gives."""
    torch.manual_seed(0)
    enc = MODELS.build(dict(MOE_VIT, n_bias_sets=3)).eval()
    x, task = torch.randn(5, 3, 32, 32), torch.tensor([2, 0, 2, 1, 0])
    with torch.no_grad():
        mixed = enc(x, task)
        for t in range(3):
            alone = enc(x[task == t], task[task == t])
            for a, b in zip(mixed.maps, alone.maps):
                torch.testing.assert_close(a[task == t], b)
    assert enc.task_names == ('0', '1', '2')
    with pytest.raises(ValueError, match='long tensor'):
        enc(x, '1')          # a name routes, but the bias sets need a row per sample
    with pytest.raises(ValueError, match=r'rows in \[0, 2\]'):
        enc(x, torch.tensor([0, 1, 2, 3, 0]))
    with pytest.raises(ValueError, match='one task per bias set'):
        MODELS.build(dict(MOE_VIT, n_bias_sets=3, tasks=2))


def test_moevit_without_bias_sets_is_unchanged():
    """Bias sets whose rows all hold the plain biases compute what the plain MoEViT computes
    (so the bias-set path is the same function), and a MoEViT built without them has no
    table: the Mod-Squad configs build and run as before."""
    torch.manual_seed(0)
    plain = MODELS.build(dict(MOE_VIT, tasks=3)).train()
    assert not [n for n, p in plain.named_parameters() if 'bias' in n and p.ndim == 2
                and '.mlp.fc' not in n]       # (the experts' [E, H] biases aside)
    sets = MODELS.build(dict(MOE_VIT, n_bias_sets=3)).train()
    sets.load_state_dict(plain.state_dict())   # 1-D biases fill every row
    x = torch.randn(4, 3, 32, 32)
    for t in range(3):
        a = plain(x, str(t))
        b = sets(x, torch.full((4,), t))
        for u, v in zip(a.maps, b.maps):
            torch.testing.assert_close(u, v)
        assert a.aux_losses.keys() == b.aux_losses.keys() == {'loss_moe_mi'}


def test_few_shot_growth_adds_a_router_per_channel():
    torch.manual_seed(0)
    model = MODELS.build(tiny_cfg_with(MOE_VIT))
    encoder = model.image_encoder
    layer = dict(encoder.moe_layers())['blocks.1.mlp']
    mean = layer.router.weight.detach().mean(0)
    t_idx, g_idx = add_task(model, channels=2)
    assert t_idx.tolist() == [4, 5] and encoder.n_bias_sets == 6 and len(encoder.task_names) == 6
    assert layer.router.weight.shape[0] == 6 and layer.router.usage.shape[0] == 6
    torch.testing.assert_close(layer.router.weight[5], mean)
    assert torch.isclose(layer.aux_loss.mi.joint.sum(), torch.tensor(1.))
    images, labels = torch.randn(4, 3, 32, 32), torch.rand(4, 2, 32, 32)
    losses = finetune(model, images, labels, t_idx, g_idx, loss_type=0, steps=2)
    assert len(losses) == 2 and all(map(torch.isfinite, torch.tensor(losses)))


def test_tiny_moevit_config_builds_and_takes_a_step():
    cfg = Config.fromfile(CONFIGS / 'chameleon-tiny-moevit_synth-episodes.py').model
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    encoder = model.image_encoder
    assert type(encoder).__name__ == 'MoEViT' and len(encoder.task_names) == cfg.n_tasks == 48
    ep = loss_episode()
    ep['t_idx'] = torch.tensor([[40, 7]])
    losses = model(ep, mode='loss')
    assert set(losses) == {'loss_con', 'loss_bce', 'loss_moe_mi'}
    sum(losses.values()).backward()
    assert encoder.blocks[1].mlp.router.weight.grad[[40, 7]].abs().sum() > 0
    assert encoder.blocks[1].mlp.router.weight.grad[0].abs().sum() == 0


def test_a_dense_timm_checkpoint_fills_every_bias_set(tmp_path):
    """ViT loads a plain checkpoint into each row; MoEViT upcycles it the same way."""
    from modzoo.models.backbones.vit import ViT
    torch.manual_seed(0)
    dense = ViT(arch=VIT['arch'], img_size=32, patch_size=8)
    torch.save(dense.state_dict(), tmp_path / 'dense.pth')
    init = dict(type='Pretrained', checkpoint=str(tmp_path / 'dense.pth'))
    for cfg in (VIT, MOE_VIT):
        enc = MODELS.build(dict(cfg, n_bias_sets=3, init_cfg=init))
        enc.init_weights()
        for name in ('blocks.0.norm1.bias', 'blocks.1.norm2.bias', 'blocks.3.attn.proj.bias'):
            table = enc.get_parameter(name)
            assert table.shape[0] == 3 and torch.equal(table, dense.get_parameter(name).expand(
                3, -1)), name
