import pytest
import torch

from modzoo.models.layers import moe_dispatch
from modzoo.models.layers.moe_dispatch import (combine, dispatch, expert_capacity, from_slots,
                                               grouped_linear, plan_dispatch, to_slots)

# 4 tokens x 2 choices over 3 experts, hand-checked below
EXPERTS = torch.tensor([[0, 1], [0, 2], [0, 1], [1, 0]])
GATES = torch.tensor([[0.6, 0.4], [0.7, 0.3], [0.9, 0.1], [0.8, 0.2]])


def test_dropless_plan_groups_pairs_by_expert():
    plan = plan_dispatch(EXPERTS, GATES, 3)
    assert plan.counts.tolist() == [4, 3, 1]
    assert plan.offsets.tolist() == [4, 7, 8]
    assert plan.offsets.dtype == torch.int32
    # first choices before second choices within an expert; pairs are token * k + slot
    assert plan.pair_idx.tolist() == [0, 2, 4, 7, 6, 1, 5, 3]
    assert plan.token_idx.tolist() == [0, 1, 2, 3, 3, 0, 2, 1]
    assert plan.expert_idx.tolist() == [0, 0, 0, 0, 1, 1, 1, 2]
    assert torch.allclose(plan.gates, GATES.flatten()[plan.pair_idx])
    assert torch.equal(EXPERTS.flatten()[plan.pair_idx], plan.expert_idx)


def test_capacity_keeps_first_choices_first():
    plan = plan_dispatch(EXPERTS, GATES, 3, capacity=2)
    # expert 0: first choices of tokens 0, 1 kept; token 2's first and token 3's second
    # dropped. expert 1: token 3 (first choice), then token 0 (second) kept; token 2 dropped.
    assert plan.counts.tolist() == [2, 2, 1]
    assert plan.pair_idx.tolist() == [0, 2, 6, 1, 3]
    assert plan.token_idx.tolist() == [0, 1, 3, 0, 1]
    assert plan.offsets.tolist() == [2, 4, 5]


def test_expert_capacity():
    assert expert_capacity(10, 4, 2, 1.0) == 5
    assert expert_capacity(10, 4, 2, 1.25) == 7
    with pytest.raises(ValueError, match='capacity_factor'):
        expert_capacity(10, 4, 2, 0)


def test_dispatch_combine_weights_by_gates():
    x = torch.randn(4, 8)
    plan = plan_dispatch(EXPERTS, GATES, 3)
    assert torch.allclose(combine(dispatch(x, plan), plan, 4), x)  # gates sum to 1
    dropped = plan_dispatch(EXPERTS, GATES, 3, capacity=2)
    kept_gate = torch.tensor([0.6 + 0.4, 0.7 + 0.3, 0.0, 0.8])
    assert torch.allclose(combine(dispatch(x, dropped), dropped, 4), x * kept_gate[:, None])


def test_slots_round_trip():
    plan = plan_dispatch(EXPERTS, GATES, 3, capacity=2)
    rows = torch.randn(5, 4)
    slots = to_slots(rows, plan, 8)
    assert torch.equal(from_slots(slots, plan), rows)
    dropped = sorted(set(range(8)) - set(plan.pair_idx.tolist()))
    assert dropped == [4, 5, 7]
    assert torch.count_nonzero(slots[dropped]) == 0


def _reference_linear(x, plan, weight, bias):
    """Per pair: x_p @ W[e_p] + b[e_p]."""
    w = weight[plan.expert_idx]  # [P, K, N]
    return torch.einsum('pk,pkn->pn', x, w) + bias[plan.expert_idx]


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_grouped_linear_matches_per_pair_reference(dtype):
    torch.manual_seed(0)
    experts = torch.randint(0, 4, (12, 2))
    experts[:, 1] = (experts[:, 0] + 1) % 4
    plan = plan_dispatch(experts, torch.rand(12, 2), 4)
    x = torch.randn(24, 8, dtype=dtype, requires_grad=True)
    weight = torch.randn(4, 8, 16, dtype=dtype, requires_grad=True)
    bias = torch.randn(4, 16, dtype=dtype, requires_grad=True)
    out = grouped_linear(x, plan, weight, bias)
    ref = _reference_linear(x, plan, weight, bias)
    assert torch.allclose(out, ref, atol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), (x, weight, bias))
    ref_grads = torch.autograd.grad(ref.square().sum(), (x, weight, bias))
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g, r, atol=1e-4)


def test_grouped_mm_and_loop_paths_agree(monkeypatch):
    torch.manual_seed(0)
    plan = plan_dispatch(torch.randint(0, 4, (10, 2)), torch.rand(10, 2), 4)
    x, weight = torch.randn(20, 8), torch.randn(4, 8, 16)
    assert moe_dispatch._grouped_mm_supported(x, weight)
    grouped = grouped_linear(x, plan, weight)
    monkeypatch.setattr(moe_dispatch, '_grouped_mm_supported', lambda *args: False)
    assert torch.allclose(grouped_linear(x, plan, weight), grouped, atol=1e-6)


def test_unaligned_or_double_falls_back_to_loop():
    assert not moe_dispatch._grouped_mm_supported(torch.randn(4, 6), torch.randn(2, 6, 6))
    assert not moe_dispatch._grouped_mm_supported(torch.randn(4, 8, dtype=torch.float64),
                                                  torch.randn(2, 8, 8, dtype=torch.float64))


def test_gradcheck_dispatch_chain():
    torch.manual_seed(0)
    plan = plan_dispatch(torch.tensor([[0, 1], [1, 2], [2, 0]]),
                         torch.rand(3, 2, dtype=torch.float64), 3)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: combine(grouped_linear(dispatch(x, plan), plan, w, b), plan, 3),
        (x, weight, bias))


@pytest.mark.parametrize('capacity', [None, 9])
def test_folded_biases_equal_the_gathered_bias_rows(capacity):
    """Before the overhead work the MoE MLP gathered each pair's fc1 and fc2 bias rows and
    added them; now grouped_linear adds the fc1 bias as one_hot(expert) @ bias and combine
    starts its sum with the gates times the fc2 bias: same output and gradients (to 1e-6 in
    fp32)."""
    torch.manual_seed(0)
    num_tokens, experts = 40, 5
    plan = plan_dispatch(torch.rand(num_tokens, experts).topk(2).indices,
                         torch.rand(num_tokens, 2), experts, capacity)
    x = torch.randn(len(plan.token_idx), 24, requires_grad=True)
    w1, w2 = (torch.randn(experts, 24, 24, requires_grad=True) for _ in range(2))
    b1, b2 = (torch.randn(experts, 24, requires_grad=True) for _ in range(2))
    grad_out = torch.randn(num_tokens, 24)
    results = []
    for gathered in (True, False):
        if gathered:
            h = grouped_linear(x, plan, w1) + b1.index_select(0, plan.expert_idx)
            y = grouped_linear(h, plan, w2) + b2.index_select(0, plan.expert_idx)
            out = combine(y, plan, num_tokens)
        else:
            h = grouped_linear(x, plan, w1, b1)
            out = combine(grouped_linear(h, plan, w2), plan, num_tokens, b2)
        results.append((out, *torch.autograd.grad(out, (x, w1, b1, w2, b2), grad_out)))
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6 * a.abs().max().item())


def test_gradcheck_combine_with_bias():
    torch.manual_seed(0)
    experts = torch.tensor([[0, 1], [1, 2], [2, 0]])
    gates = torch.rand(3, 2, dtype=torch.float64, requires_grad=True)
    y = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda g, y, b: combine(y, plan_dispatch(experts, g, 3), 3, b), (gates, y, bias))


def test_bf16_and_autocast():
    torch.manual_seed(0)
    plan = plan_dispatch(torch.randint(0, 4, (16, 2)), torch.rand(16, 2), 4)
    x, weight, bias = torch.randn(32, 16), torch.randn(4, 16, 32), torch.randn(4, 32)
    ref = grouped_linear(x, plan, weight, bias)
    bf16 = grouped_linear(x.bfloat16(), plan, weight.bfloat16(), bias.bfloat16())
    assert bf16.dtype == torch.bfloat16
    assert torch.allclose(bf16.float(), ref, rtol=0.05, atol=0.3)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        auto = grouped_linear(x, plan, weight, bias)
    assert auto.dtype == torch.bfloat16
    assert torch.allclose(auto.float(), ref, rtol=0.05, atol=0.3)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_unused_expert_gets_zero_gradient(dtype):
    plan = plan_dispatch(torch.tensor([[0, 2], [2, 0], [0, 2], [2, 0]]), torch.rand(4, 2), 3)
    assert plan.counts.tolist() == [4, 0, 4]
    x = torch.randn(8, 8, dtype=dtype)
    weight = torch.randn(3, 8, 16, dtype=dtype, requires_grad=True)
    bias = torch.randn(3, 16, dtype=dtype, requires_grad=True)
    grouped_linear(x, plan, weight, bias).square().sum().backward()
    assert torch.count_nonzero(weight.grad[1]) == 0 and torch.count_nonzero(bias.grad[1]) == 0
    assert torch.count_nonzero(weight.grad[0]) > 0
