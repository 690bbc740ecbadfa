import math

import torch

from modzoo.models.layers.moe_losses import (MoEAuxLoss, MutualInformationLoss, router_z_loss,
                                             sum_aux_losses, switch_balance_loss)
from modzoo.models.layers.moe_router import Routing, TaskRouter


def test_switch_balance_loss_by_hand():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]])
    # f = [1/2, 1/2, 0], P = [0.4, 0.4, 0.2] -> 3 * (0.2 + 0.2)
    assert torch.isclose(switch_balance_loss(probs, torch.tensor([[0], [1]])), torch.tensor(1.2))
    uniform = torch.full((4, 4), 0.25)
    assert torch.isclose(switch_balance_loss(uniform, torch.tensor([[0, 1], [2, 3]] * 2)),
                         torch.tensor(1.0))


def test_router_z_loss_by_hand():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, math.log(3.0), -1e9, -1e9]])
    assert torch.isclose(router_z_loss(logits), torch.tensor(math.log(4.0) ** 2))


def test_mi_loss_formula_by_hand():
    mi = MutualInformationLoss(2, 3).eval()
    mi.joint.copy_(torch.tensor([[0.3, 0.1, 0.1], [0.0, 0.2, 0.3]]))
    probs = torch.tensor([[0.5, 0.3, 0.2]]).repeat(4, 1)
    # -P(t=0) * sum_e p_b(e) * log(P(0, e) / P(e)), P(e) = [0.3, 0.3, 0.4]
    eps = 1e-4
    expected = -0.5 * (0.5 * (math.log(0.3 + eps) - math.log(0.3 + eps))
                       + 0.3 * (math.log(0.1 + eps) - math.log(0.3 + eps))
                       + 0.2 * (math.log(0.1 + eps) - math.log(0.4 + eps)))
    assert math.isclose(mi(probs, 0).item(), expected, rel_tol=1e-5)


def test_mi_loss_over_one_batch_per_task_is_conditional_entropy():
    joint = torch.tensor([[0.25, 0.05, 0.0, 0.1], [0.05, 0.15, 0.3, 0.1]])
    mi = MutualInformationLoss(2, 4).eval()
    mi.joint.copy_(joint)
    total = sum(mi((joint[t] / joint[t].sum()).expand(3, 4), t) for t in range(2))
    p_t, p_e = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    nz = joint > 0
    mutual_info = (joint[nz] * (joint / (p_t * p_e))[nz].log()).sum()
    entropy_t = -(p_t * p_t.log()).sum()
    assert torch.isclose(total, entropy_t - mutual_info, atol=1e-3)


def test_mi_running_estimate_updates_in_training_only():
    mi = MutualInformationLoss(2, 2, momentum=0.5)
    a, b = torch.tensor([[0.9, 0.1]]), torch.tensor([[0.2, 0.8]])
    mi(a, 0)  # first update: mean of one batch
    assert torch.allclose(mi.joint, torch.tensor([[0.9, 0.1], [0.0, 0.0]]))
    mi(b, 1)  # second: mean of two batches (momentum min(0.5, 1 - 1/2))
    assert torch.allclose(mi.joint, torch.tensor([[0.45, 0.05], [0.1, 0.4]]))
    mi(b, 1)  # then EMA with momentum 0.5
    assert torch.allclose(mi.joint, torch.tensor([[0.225, 0.025], [0.15, 0.6]]))
    assert mi.num_updates == 3
    mi.eval()
    mi(a, 0)
    assert torch.allclose(mi.joint, torch.tensor([[0.225, 0.025], [0.15, 0.6]]))


def test_batch_only_estimate_has_no_signal_with_unmixed_batches():
    """A P(t, e) from the current single-task batch alone (momentum 0) gives MI = 0."""
    torch.manual_seed(0)
    router = TaskRouter(8, 4, 2, tasks=2)
    mi = MutualInformationLoss(2, 4, momentum=0.0)
    loss = mi(router(torch.randn(16, 8) + 1, 0).probs, 0)
    loss.backward()
    assert loss.item() == 0
    assert torch.count_nonzero(router.weight.grad) == 0


def _measured_usage(router, batch, num_tasks):
    router.usage.zero_()
    router.eval()
    with torch.no_grad():
        for t in range(num_tasks):
            for _ in range(4):
                router(batch(), t)
    return router.usage.double()


def test_mi_loss_alone_specialises_tasks_with_unmixed_batches():
    """Minimising L_MI over single-task batches drives the two tasks to disjoint experts
    and keeps the overall usage of the 4 experts balanced."""
    torch.manual_seed(0)
    num_tasks, num_experts, dims = 2, 4, 16
    router = TaskRouter(dims, num_experts, 2, tasks=num_tasks)
    mi = MutualInformationLoss(num_tasks, num_experts, momentum=0.9)
    mean = torch.randn(dims)

    def batch():
        return mean + 0.5 * torch.randn(64, dims)

    before = _measured_usage(router, batch, num_tasks)
    assert (before.max(0).values / before.sum(0)).min() < 0.7  # tasks share experts
    router.train()
    optimizer = torch.optim.Adam(router.parameters(), lr=0.02)
    for step in range(200):
        task = step % num_tasks  # one task per batch, alternating
        loss = mi(router(batch(), task).probs, task)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    usage = _measured_usage(router, batch, num_tasks)  # [T, E] top-k choices
    owner_share = usage.max(0).values / usage.sum(0)
    assert owner_share.min() > 0.9  # every expert serves (almost) one task only
    total = usage.sum(0) / usage.sum()
    assert total.min() > 0.2 and total.max() < 0.3  # each of 4 experts ~ 1/4 of the load


def test_aux_loss_keys_and_weights():
    torch.manual_seed(0)
    logits = torch.randn(6, 4)
    probs = logits.softmax(-1)
    gates, experts = probs.topk(2)
    routing = Routing(logits, probs, experts, gates, 0)
    assert MoEAuxLoss(1, 4)(routing) == {}
    losses = MoEAuxLoss(1, 4, mi_weight=0.5, balance_weight=0.01, z_weight=0.001)(routing)
    assert set(losses) == {'loss_moe_mi', 'loss_moe_balance', 'loss_moe_z'}
    assert torch.isclose(losses['loss_moe_balance'], 0.01 * switch_balance_loss(probs, experts))
    assert torch.isclose(losses['loss_moe_z'], 0.001 * router_z_loss(logits))
    only_z = MoEAuxLoss(1, 4, z_weight=0.001)
    assert set(only_z(routing)) == {'loss_moe_z'}
    assert only_z.eval()(routing) == {}


def test_sum_aux_losses():
    total = sum_aux_losses([{'loss_moe_z': torch.tensor(1.0)},
                            {'loss_moe_z': torch.tensor(2.0), 'loss_moe_mi': torch.tensor(3.0)},
                            {}])
    assert total == {'loss_moe_z': torch.tensor(3.0), 'loss_moe_mi': torch.tensor(3.0)}
