import pytest
import torch
from timm.layers import Mlp

from modzoo.models.layers.moe_mlp import MoEMlp
from modzoo.registry import MODELS


def _reference(moe, x, task=None):
    """Per token: sum_j gate_j * (W2_e GELU(W1_e x + b1_e) + b2_e), one token at a time."""
    tokens = x.reshape(-1, x.shape[-1])
    routing = moe.router(tokens, task)
    out = torch.zeros_like(tokens)
    for s, token in enumerate(tokens):
        for e, gate in zip(routing.topk_experts[s], routing.topk_gates[s]):
            h = torch.nn.functional.gelu(token @ moe.fc1_weight[e] + moe.fc1_bias[e])
            out[s] += gate * (h @ moe.fc2_weight[e] + moe.fc2_bias[e])
    return out.reshape(x.shape)


def _randomise(moe):
    torch.manual_seed(1)
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.5)


def test_matches_per_token_reference():
    moe = MoEMlp(16, num_experts=4, top_k=2, hidden_dims=32, tasks=['a', 'b'])
    _randomise(moe)
    x = torch.randn(2, 5, 16)
    out, aux = moe(x, 'b')
    assert out.shape == x.shape and aux == {}
    assert torch.allclose(out, _reference(moe, x, 'b'), atol=1e-5)


def test_default_hidden_is_4d_over_k():
    assert MoEMlp(16, num_experts=8, top_k=4).fc1_weight.shape == (8, 16, 16)


def test_upcycled_copies_equal_the_dense_mlp():
    torch.manual_seed(0)
    dense = Mlp(32, 64)
    moe = MoEMlp(32, num_experts=4, top_k=2, hidden_dims=64, router_init_std=1.0)
    moe.upcycle(dense)
    x = torch.randn(3, 7, 32)
    assert torch.allclose(moe(x)[0], dense(x), atol=1e-5)


def test_upcycle_splits_dense_hidden_units_among_experts():
    torch.manual_seed(0)
    dense = Mlp(16, 64)
    # 4 experts of hidden 32: chunk 0 -> experts 0, 2; chunk 1 -> experts 1, 3
    moe = MoEMlp(16, num_experts=4, top_k=2, hidden_dims=32)
    moe.upcycle(dense)
    assert torch.equal(moe.fc1_weight[2], dense.fc1.weight[:32].t())
    assert torch.equal(moe.fc1_bias[3], dense.fc1.bias[32:])
    assert torch.equal(moe.fc2_weight[1], 2 * dense.fc2.weight[:, 32:].t())
    assert torch.equal(moe.fc2_bias[0], dense.fc2.bias)
    # with two experts and equal gates (zero router) each token uses both chunks once
    pair = MoEMlp(16, num_experts=2, top_k=2, hidden_dims=32, router_init_std=0)
    pair.upcycle(dense)
    x = torch.randn(2, 5, 16)
    assert torch.allclose(pair(x)[0], dense(x), atol=1e-5)


def test_upcycle_errors():
    moe = MoEMlp(16, num_experts=4, top_k=2, hidden_dims=24)
    with pytest.raises(ValueError, match='multiple of the expert hidden size 24'):
        moe.upcycle(Mlp(16, 64))
    with pytest.raises(ValueError, match=r'fc1 \(64, 8\)'):
        moe.upcycle(Mlp(8, 64))


def test_capacity_drops_choices_past_capacity():
    torch.manual_seed(0)
    x = torch.randn(4, 8, 16)
    dropless = MoEMlp(16, num_experts=4, top_k=2, hidden_dims=16)
    _randomise(dropless)
    roomy = MoEMlp(16, num_experts=4, top_k=2, hidden_dims=16, capacity_factor=2.0)
    roomy.load_state_dict(dropless.state_dict())
    assert torch.allclose(roomy(x)[0], dropless(x)[0])  # capacity 2 * S * k / E = S
    # capacity 1 pair per expert: at most 4 of the 64 choices are computed
    tight = MoEMlp(16, num_experts=4, top_k=2, hidden_dims=16, capacity_factor=1 / 16)
    tight.load_state_dict(dropless.state_dict())
    out = tight(x)[0].reshape(32, 16)
    assert 1 <= (out.abs().sum(-1) > 0).sum() <= 4


def test_gradients_reach_router_experts_and_input():
    moe = MoEMlp(16, num_experts=4, top_k=2, hidden_dims=16, tasks=2, z_weight=1e-3)
    x = torch.randn(2, 6, 16, requires_grad=True)
    out, aux = moe(x, 1)
    (out.square().sum() + sum(aux.values())).backward()
    for name in ('fc1_weight', 'fc1_bias', 'fc2_weight', 'fc2_bias'):
        assert getattr(moe, name).grad.abs().sum() > 0, name
    assert moe.router.weight.grad[1].abs().sum() > 0
    assert moe.router.weight.grad[0].abs().sum() == 0  # the other task's router
    assert x.grad.abs().sum() > 0


def test_gradcheck_float64():
    torch.manual_seed(0)
    moe = MoEMlp(4, num_experts=3, top_k=2, hidden_dims=6, router_init_std=1.0).double()
    x = torch.randn(1, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: moe(x)[0], (x,))


def test_aux_losses_usage_and_task_errors():
    moe = MoEMlp(16, num_experts=4, top_k=2, tasks=['cls', 'seg'], mi_weight=0.005,
                 balance_weight=0.01)
    x = torch.randn(2, 3, 16)
    _, aux = moe(x, 'seg')
    assert set(aux) == {'loss_moe_mi', 'loss_moe_balance'}
    assert moe.router.usage.sum(1).tolist() == [0, 12]
    with pytest.raises(KeyError, match="unknown task 'det'"):
        moe(x, 'det')
    assert moe.eval()(x, 'cls')[1] == {}


def test_bf16_autocast_and_params():
    torch.manual_seed(0)
    moe = MoEMlp(16, num_experts=4, top_k=2)
    x = torch.randn(2, 8, 16)
    ref = moe(x)[0]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        auto = moe(x)[0]
    assert auto.dtype == torch.bfloat16
    assert torch.allclose(auto.float(), ref, atol=2e-2)
    bf16 = moe.to(torch.bfloat16)(x.bfloat16())[0]
    assert bf16.dtype == torch.bfloat16
    assert torch.allclose(bf16.float(), ref, atol=2e-2)


def test_build_from_registry():
    moe = MODELS.build(dict(type='MoEMlp', embed_dim=16, num_experts=4, top_k=2))
    assert isinstance(moe, MoEMlp)
