import pytest
import torch
from mmengine.runner.checkpoint import load_state_dict as mmengine_load_state_dict
from timm.models.vision_transformer import VisionTransformer

from modzoo.engine import save_checkpoint_atomic
from modzoo.models.backbones.moe_vit import MoEViT, RoutedAttention, RoutedMlp
from modzoo.registry import MODELS

TINY = dict(embed_dim=32, depth=4, num_heads=2)


def _moe(**kwargs):
    torch.manual_seed(0)
    args = dict(arch=TINY, tasks=['a', 'b'], img_size=32, patch_size=8, moa_experts=4,
                mlp_experts=4, mlp_top_k=2)
    return MoEViT(**{**args, **kwargs})


def test_twice_layout_shapes_and_registry():
    model = MODELS.build(dict(type='MoEViT', arch=TINY, tasks=['a', 'b'], img_size=32,
                              patch_size=8, moa_experts=4, mlp_experts=[4, 6], mlp_top_k=2,
                              out_indices=(1, 3)))
    assert [n for n, _ in model.moe_layers()] == [
        'blocks.0.attn', 'blocks.1.mlp', 'blocks.2.attn', 'blocks.3.mlp']
    assert isinstance(model.blocks[0].attn, RoutedAttention)
    assert isinstance(model.blocks[3].mlp, RoutedMlp)
    assert model.blocks[3].mlp.num_experts == 6 and model.blocks[1].mlp.top_k == 2
    assert model.blocks[1].mlp.fc1_weight.shape == (4, 32, 4 * 32 // 2)  # hidden 4D / k
    assert model.blocks[0].attn.router.top_k == 2  # MoA top-k = heads
    feats = model(torch.randn(2, 3, 32, 32), 'b')
    assert [tuple(m.shape) for m in feats.maps] == [(2, 32, 4, 4)] * 2
    assert feats.cls_token.shape == (2, 32) and feats.aux_losses == {}
    # every layer counted the tokens of task b: k choices for each of 2 x 17 tokens
    assert model.blocks[1].mlp.router.usage.sum(1).tolist() == [0, 2 * 17 * 2]


def test_aux_losses_in_training_and_gradients():
    model = _moe(mi_weight=0.005, z_weight=0.001).train()
    feats = model(torch.randn(2, 3, 32, 32), 'a')
    assert set(feats.aux_losses) == {'loss_moe_mi', 'loss_moe_z'}
    (feats.maps[-1].square().mean() + sum(feats.aux_losses.values())).backward()
    assert model.blocks[0].attn.q_weight.grad.abs().sum() > 0
    assert model.blocks[1].mlp.router.weight.grad[0].abs().sum() > 0
    assert model.blocks[1].mlp.router.weight.grad[1].abs().sum() == 0  # task b's router


@pytest.mark.parametrize('arch, shared, router', [
    # research/modsquad.md: the official models instantiated with 14 tasks at 224 px
    ('modsquad-small-twice', 52_398_720, 71_424),
    ('modsquad-base-twice', 200_347_392, 184_320),
])
def test_modsquad_configs_match_the_official_parameter_counts(arch, shared, router):
    with torch.device('meta'):
        model = MoEViT(arch=arch, tasks=14)
    params = dict(model.named_parameters())
    per_task = ('.router.', 'task_embedding')  # "shared": all but routers and task embedding
    assert sum(p.numel() for n, p in params.items() if not n.startswith(per_task)
               and '.router.' not in n) == shared
    assert sum(p.numel() for n, p in params.items() if '.router.' in n) == 14 * router
    assert model.task_embedding.shape == (14, model.embed_dim)
    assert model.blocks[0].attn.head_dims == 128  # 2D / heads, also the dense attention
    assert model.blocks[1].attn.qkv.weight.shape[0] == 3 * 2 * model.embed_dim
    assert model.global_pool == 'avg' and model.blocks[1].mlp.router.prob_floor == 1e-4


def test_task_embedding_is_added_before_every_block():
    model = _moe(task_embedding=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        model.task_embedding[0] = 0
        want = _moe().eval()  # same seed: the same weights without the embedding
        want.load_state_dict({k: v for k, v in model.state_dict().items()
                              if k != 'task_embedding'})
        assert torch.allclose(model(x, 'a').maps[-1], want(x, 'a').maps[-1], atol=1e-6)
        model.task_embedding[0, 0] = 1.0
        # by hand: the blocks of `want`, each after adding the embedding
        tokens = want.norm_pre(want._pos_embed(want.patch_embed(x)))
        for block in want.blocks:
            tokens = block(tokens + model.task_embedding[0])
        got = model(x, 'a')
    assert torch.allclose(got.maps[-1].flatten(2).transpose(1, 2), want.norm(tokens)[:, 1:],
                          atol=1e-5)
    assert not torch.allclose(got.maps[-1], model(x, 'b').maps[-1])


def test_modsquad_expert_init_ranges():
    model = _moe(expert_init='modsquad', task_embedding=True)
    mlp, moa = model.blocks[1].mlp, model.blocks[0].attn
    dims, hidden = mlp.fc1_weight.shape[1:]
    assert mlp.fc1_weight.abs().max() <= 1 / dims < 2 * mlp.fc1_weight.abs().max()
    assert mlp.fc2_weight.abs().max() <= 1 / hidden
    assert mlp.fc1_bias.abs().max() <= hidden ** -0.5 < 2 * mlp.fc1_bias.abs().max()
    assert moa.q_weight.abs().max() <= 1 / dims
    assert 0.5 < model.task_embedding.std() < 2  # torch.randn, as the official model
    assert _moe().blocks[1].mlp.fc1_bias.abs().max() == 0  # the timm init


def test_upcycled_copies_equal_timm_vit(tmp_path):
    torch.manual_seed(0)
    timm_vit = VisionTransformer(img_size=32, patch_size=8, num_classes=0, global_pool='',
                                 **TINY).eval()
    path = str(tmp_path / 'vit.safetensors')
    save_checkpoint_atomic(timm_vit.state_dict(), path)
    model = _moe(moa_layers=[], mlp_layers=[0, 1, 2, 3], mlp_hidden_dims=128,
                 init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    want = timm_vit.forward_features(x)  # [B, 1 + 16, D]
    feats = model(x, 'b')
    assert torch.allclose(feats.cls_token, want[:, 0], atol=1e-5)
    assert torch.allclose(feats.maps[-1].flatten(2).transpose(1, 2), want[:, 1:], atol=1e-5)


def test_upcycle_splits_hidden_units_and_moa_of_one_head():
    torch.manual_seed(0)
    # one head without biases: MoA of k = 1 upcycles to exactly that attention; hidden 2D
    # experts with k = 2 and equal gates (zero routers) hold each half of the dense MLP once
    dense = VisionTransformer(img_size=32, patch_size=8, num_classes=0, global_pool='',
                              embed_dim=32, depth=2, num_heads=1, qkv_bias=False).eval()
    for block in dense.blocks:
        torch.nn.init.zeros_(block.attn.proj.bias)
    model = MoEViT(arch=dict(embed_dim=32, depth=2, num_heads=1), tasks=['a'], img_size=32,
                   patch_size=8, qkv_bias=False, moa_experts=3, mlp_experts=2, mlp_top_k=2,
                   router_init_std=0).eval()
    model.upcycle(dense)
    for _, layer in model.moe_layers():
        torch.nn.init.zeros_(layer.router.weight)
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(model(x).maps[-1].flatten(2).transpose(1, 2),
                          dense.forward_features(x)[:, 1:], atol=1e-5)


def test_upcycle_refuses_other_widths(tmp_path):
    dense = VisionTransformer(img_size=32, patch_size=8, num_classes=0, embed_dim=32, depth=4,
                              num_heads=2)
    with pytest.raises(ValueError, match=r'blocks.1.attn.qkv.weight'):
        _moe(head_dims=32).upcycle(dense)  # twice-wide dense attention


def test_bad_input_errors():
    model = _moe()
    with pytest.raises(KeyError, match=r"task 'c'.*\['a', 'b'\]"):
        model(torch.randn(1, 3, 32, 32), 'c')
    with pytest.raises(KeyError, match='task None'):
        model(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r'block 1: mlp top-k 5 must be in \[1, mlp_experts=4\]'):
        _moe(mlp_top_k=5)
    with pytest.raises(ValueError, match=r'moa top-k 2 must be in \[1, moa_experts=1\]'):
        _moe(moa_experts=1)
    with pytest.raises(ValueError, match=r'mlp_layers=\[1, 4\].*\[0, 3\] for depth 4'):
        _moe(mlp_layers=[1, 4])
    with pytest.raises(ValueError, match=r'moa_experts=\[4\] must be an int or one count'):
        _moe(moa_experts=[4])
    with pytest.raises(ValueError, match="arch 'huge' is not one of"):
        MoEViT(arch='huge')


def test_checkpoint_with_other_expert_count_is_refused():
    state = _moe(mlp_experts=6).state_dict()
    model = _moe()
    with pytest.raises(ValueError, match=r'blocks.1.mlp routes 2 task\(s\) over 6 experts, '
                                         r'but the config builds 2 task\(s\).*over 4'):
        model.load_state_dict(state)
    with pytest.raises(ValueError, match='over 6 experts'):  # mmengine's loader (load_from)
        mmengine_load_state_dict(model, state)
    with pytest.raises(ValueError, match=r'routes 3 task\(s\)'):
        model.load_state_dict(_moe(tasks=3).state_dict())


def test_frozen_tasks_route_among_old_experts_without_gradient():
    model = _moe(mlp_experts=6, moa_experts=5, frozen_tasks=['a'], new_experts=2).train()
    x = torch.randn(2, 3, 32, 32)
    for task in ('a', 'b'):
        model(x, task).maps[-1].sum().backward()
    mlp, moa = model.blocks[1].mlp, model.blocks[0].attn
    assert mlp.router.usage[0, 4:].sum() == 0 and moa.router.usage[0, 3:].sum() == 0
    assert mlp.router.usage[1].sum() > 0
    assert mlp.fc1_weight.grad[:4].abs().sum() == 0 and mlp.fc1_weight.grad[4:].abs().sum() > 0
    assert moa.q_weight.grad[:3].abs().sum() == 0
    assert mlp.router.weight.grad[0].abs().sum() == 0
    assert mlp.router.weight.grad[1].abs().sum() > 0
    assert not model.patch_embed.proj.weight.requires_grad and not moa.kv.weight.requires_grad
    with pytest.raises(ValueError, match='frozen_tasks'):
        _moe(frozen_tasks=['a', 'b'], new_experts=1)
    with pytest.raises(ValueError, match='new_experts=3 must be >= 1 and leave at least'):
        _moe(frozen_tasks=['a'], new_experts=3)


def test_gradient_checkpointing_records_statistics_once():
    x = torch.randn(2, 3, 32, 32)
    runs = {}
    for checkpointing in (False, True):
        model = _moe(mi_weight=0.005).train()
        model.set_grad_checkpointing(checkpointing)
        feats = model(x, 'a')
        (feats.maps[-1].square().mean() + sum(feats.aux_losses.values())).backward()
        runs[checkpointing] = model
    plain, ckpt = runs[False], runs[True]
    for (name, a), (_, b) in zip(plain.moe_layers(), ckpt.moe_layers()):
        assert torch.equal(a.router.usage, b.router.usage), name
        assert a.router.usage.sum() > 0
        torch.testing.assert_close(a.router.usage_ema, b.router.usage_ema)
        assert a.aux_loss.mi.num_updates == b.aux_loss.mi.num_updates == 1
        torch.testing.assert_close(a.aux_loss.mi.joint, b.aux_loss.mi.joint)
    torch.testing.assert_close(plain.blocks[1].mlp.router.weight.grad,
                               ckpt.blocks[1].mlp.router.weight.grad)
