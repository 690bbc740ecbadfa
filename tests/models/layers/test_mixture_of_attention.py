import pytest
import torch

from modzoo.models.layers.mixture_of_attention import MixtureOfAttentionHeads
from modzoo.models.layers.moe_dispatch import expert_capacity, plan_dispatch
from modzoo.registry import MODELS


def _reference(moa, x, task=None, kept=None):
    """Per image, token and head: g_j * softmax(x Wq_e K^T / sqrt(d)) V Wo_e, summed over
    the heads (pairs not in ``kept`` left out)."""
    batch, num_tokens, dims = x.shape
    routing = moa.router(x.reshape(-1, dims), task)
    key, value = moa.kv(x).chunk(2, dim=-1)  # [B, N, d]
    out = torch.zeros_like(x)
    for b in range(batch):
        for i in range(num_tokens):
            s = b * num_tokens + i
            for j in range(moa.num_heads):
                if kept is not None and s * moa.num_heads + j not in kept:
                    continue
                e, gate = routing.topk_experts[s, j], routing.topk_gates[s, j]
                q = x[b, i] @ moa.q_weight[e]
                attn = (q @ key[b].t() / moa.head_dims ** 0.5).softmax(-1)
                out[b, i] += gate * (attn @ value[b]) @ moa.out_weight[e]
    return out


def _randomised(**kwargs):
    moa = MixtureOfAttentionHeads(16, **kwargs)
    torch.manual_seed(1)
    for p in moa.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return moa


def test_matches_per_token_reference():
    moa = _randomised(num_experts=6, num_heads=3, head_dims=8, tasks=['a', 'b'])
    x = torch.randn(2, 5, 16)
    out, aux = moa(x, 'a')
    assert out.shape == x.shape and aux == {}
    assert torch.allclose(out, _reference(moa, x, 'a'), atol=1e-5)


def test_without_renormalisation_gates_are_raw_probabilities():
    moa = _randomised(num_experts=4, num_heads=2, head_dims=8, renormalize=False)
    x = torch.randn(1, 6, 16)
    assert torch.allclose(moa(x)[0], _reference(moa, x), atol=1e-5)


def test_capacity_drops_heads():
    moa = _randomised(num_experts=4, num_heads=2, head_dims=8, capacity_factor=0.5)
    x = torch.randn(2, 4, 16)
    routing = moa.router(x.reshape(8, 16))
    plan = plan_dispatch(routing.topk_experts, routing.topk_gates, 4,
                         expert_capacity(8, 4, 2, 0.5))
    assert len(plan.pair_idx) < 16
    assert torch.allclose(moa(x)[0], _reference(moa, x, kept=set(plan.pair_idx.tolist())),
                          atol=1e-5)


def test_shapes_params_and_defaults():
    moa = MixtureOfAttentionHeads(32, num_experts=12, num_heads=4)
    assert moa.head_dims == 8
    assert moa.q_weight.shape == (12, 32, 8) and moa.out_weight.shape == (12, 8, 32)
    assert moa.kv.weight.shape == (16, 32)
    assert moa.router.top_k == 4


def test_gradients_and_aux_losses():
    moa = MixtureOfAttentionHeads(16, num_experts=6, num_heads=2, tasks=['cls', 'seg'],
                                  mi_weight=0.005, z_weight=0.001)
    x = torch.randn(2, 5, 16, requires_grad=True)
    out, aux = moa(x, 'seg')
    assert set(aux) == {'loss_moe_mi', 'loss_moe_z'}
    (out.square().sum() + sum(aux.values())).backward()
    for p in (moa.q_weight, moa.out_weight, moa.kv.weight, x):
        assert p.grad.abs().sum() > 0
    assert moa.router.weight.grad[1].abs().sum() > 0
    assert moa.router.usage.sum(1).tolist() == [0, 20]


def test_gradcheck_float64():
    torch.manual_seed(0)
    moa = MixtureOfAttentionHeads(4, num_experts=3, num_heads=2, head_dims=3,
                                  router_init_std=1.0).double()
    x = torch.randn(1, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: moa(x)[0], (x,))


def test_bad_input_errors():
    moa = MixtureOfAttentionHeads(16, num_experts=4, num_heads=2, tasks=['cls', 'seg'])
    with pytest.raises(ValueError, match=r'tokens \[B, N, D\].*\(10, 16\)'):
        moa(torch.randn(10, 16), 'cls')
    with pytest.raises(KeyError, match="unknown task 'det'"):
        moa(torch.randn(1, 3, 16), 'det')
    with pytest.raises(ValueError, match=r'top_k=5.*num_experts=4'):
        MixtureOfAttentionHeads(16, num_experts=4, num_heads=5)


def test_bf16_autocast():
    torch.manual_seed(0)
    moa = MixtureOfAttentionHeads(16, num_experts=4, num_heads=2)
    x = torch.randn(2, 8, 16)
    ref = moa(x)[0]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        auto = moa(x)[0]
    assert auto.dtype == torch.bfloat16
    assert torch.allclose(auto.float(), ref, atol=1e-2)


def test_build_from_registry():
    moa = MODELS.build(dict(type='MixtureOfAttentionHeads', embed_dim=16, num_experts=4,
                            num_heads=2))
    assert isinstance(moa, MixtureOfAttentionHeads)
