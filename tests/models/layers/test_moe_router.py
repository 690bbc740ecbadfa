import pytest
import torch

from modzoo.models.layers.moe_router import TaskRouter, resolve_tasks, statistics_paused


def test_top_k_larger_than_num_experts_names_both():
    with pytest.raises(ValueError, match=r'top_k=5.*num_experts=4'):
        TaskRouter(8, num_experts=4, top_k=5)


def test_tasks_from_count_or_names():
    assert resolve_tasks(3) == ('0', '1', '2')
    assert resolve_tasks(['cls', 'seg']) == ('cls', 'seg')
    with pytest.raises(ValueError, match='distinct'):
        resolve_tasks(['cls', 'cls'])


def test_task_selection_errors_name_the_tasks():
    router = TaskRouter(8, 4, 2, tasks=['cls', 'seg'])
    x = torch.randn(3, 8)
    with pytest.raises(KeyError, match=r"unknown task 'depth'.*\['cls', 'seg'\]"):
        router(x, 'depth')
    with pytest.raises(KeyError, match='out of range'):
        router(x, 2)
    with pytest.raises(ValueError, match='task is required'):
        router(x)
    assert TaskRouter(8, 4, 2).task_index(None) == 0


def test_topk_gates_and_probs():
    torch.manual_seed(0)
    x = torch.randn(10, 8)
    plain = TaskRouter(8, 6, 3, renormalize=False, init_std=1.0)
    routing = plain(x)
    assert torch.allclose(routing.probs.sum(-1), torch.ones(10))
    assert torch.equal(routing.topk_gates, routing.probs.gather(1, routing.topk_experts))
    assert torch.equal(routing.topk_experts, routing.probs.topk(3).indices)
    renorm = TaskRouter(8, 6, 3, renormalize=True, init_std=1.0)
    renorm.load_state_dict(plain.state_dict())
    gates = renorm(x).topk_gates
    assert torch.allclose(gates.sum(-1), torch.ones(10))
    assert torch.allclose(gates, routing.topk_gates / routing.topk_gates.sum(-1, keepdim=True))


def test_one_router_per_task_or_shared():
    torch.manual_seed(0)
    x = torch.randn(16, 8)
    per_task = TaskRouter(8, 4, 1, tasks=['a', 'b'], init_std=1.0)
    assert per_task.weight.shape == (2, 4, 8)
    assert torch.allclose(per_task(x, 'a').logits, x @ per_task.weight[0].t())
    assert torch.allclose(per_task(x, 'b').logits, x @ per_task.weight[1].t())
    shared = TaskRouter(8, 4, 1, tasks=['a', 'b'], shared=True, init_std=1.0)
    assert shared.weight.shape == (1, 4, 8)
    assert torch.equal(shared(x, 'a').logits, shared(x, 'b').logits)
    # usage is still counted per task
    assert shared.usage.sum(1).tolist() == [16, 16]


def test_usage_counts_topk_choices_per_task():
    torch.manual_seed(0)
    router = TaskRouter(8, 4, 2, tasks=2, init_std=1.0)
    x = torch.randn(5, 8)
    experts = router(x, 1).topk_experts
    expected = torch.bincount(experts.flatten(), minlength=4)
    assert torch.equal(router.usage[1], expected)
    assert router.usage[0].sum() == 0
    router.eval()
    router(x, 1)
    assert torch.equal(router.usage[1], 2 * expected)


def test_noisy_gating_only_in_training():
    torch.manual_seed(0)
    router = TaskRouter(8, 4, 2, noisy_gating=True)
    x = torch.randn(6, 8)
    clean = x @ router.weight[0].t()
    router.train()
    assert not torch.allclose(router(x).logits, router(x).logits)
    router.eval()
    assert torch.allclose(router(x).logits, clean)


def test_router_runs_in_fp32():
    router = TaskRouter(8, 4, 2).to(torch.bfloat16)
    x = torch.randn(6, 8, dtype=torch.bfloat16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        routing = router(x)
    assert routing.logits.dtype == routing.probs.dtype == routing.topk_gates.dtype == torch.float32


def test_zero_init():
    router = TaskRouter(8, 4, 2, init_std=0)
    assert torch.count_nonzero(router.weight) == 0
    assert torch.allclose(router(torch.randn(3, 8)).probs, torch.full((3, 4), 0.25))


def test_prob_floor_raises_the_gates_not_the_choice():
    torch.manual_seed(0)
    x = torch.randn(10, 8)
    plain = TaskRouter(8, 6, 3, renormalize=False, init_std=1.0)
    floored = TaskRouter(8, 6, 3, renormalize=False, init_std=1.0, prob_floor=1e-4)
    floored.load_state_dict(plain.state_dict())
    want, got = plain(x), floored(x)
    assert torch.equal(got.topk_experts, want.topk_experts)
    assert torch.equal(got.probs, want.probs)
    torch.testing.assert_close(got.topk_gates, want.topk_gates + 1e-4)


def test_usage_ema_is_modsquads_095_average_of_the_passes():
    torch.manual_seed(0)
    router = TaskRouter(8, 4, 2, tasks=2, init_std=1.0)
    x1, x2 = torch.randn(5, 8), torch.randn(7, 8)
    c1 = torch.bincount(router(x1, 1).topk_experts.flatten(), minlength=4).float()
    c2 = torch.bincount(router(x2, 1).topk_experts.flatten(), minlength=4).float()
    torch.testing.assert_close(router.usage_ema[1], 0.95 * (0.05 * c1) + 0.05 * c2)
    assert router.usage_ema[0].sum() == 0 and router.usage[1].sum() == 2 * (5 + 7)
    with statistics_paused():
        router(x1, 1)
    assert router.usage[1].sum() == 2 * (5 + 7)
    # a checkpoint saved before usage_ema existed still loads
    state = {k: v for k, v in router.state_dict().items() if k != 'usage_ema'}
    fresh = TaskRouter(8, 4, 2, tasks=2)
    fresh.load_state_dict(state)
    assert fresh.usage_ema.sum() == 0 and torch.equal(fresh.usage, router.usage)
