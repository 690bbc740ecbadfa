"""Each weighting's combine/weights on fixed per-task gradients and losses, hand-computed."""
import numpy as np
import pytest
import torch

from modzoo.engine.weightings.solvers import min_norm_weights, nash_weights
from modzoo.registry import WEIGHTINGS

GRADIENT_METHODS = ['PCGrad', 'GradVac', 'CAGrad', 'MGDA', 'IMTLG', 'IMTL', 'NashMTL',
                    'AlignedMTL', 'GradNorm', 'DBMTL', 'FMTL', 'MGDAUB']
LOSS_METHODS = ['EW', 'UW', 'DWA', 'RLW', 'GLS', 'FAMO', 'IMTLL']


def build(name, num_tasks=2, **kwargs):
    return WEIGHTINGS.build(dict(type=name, **kwargs), default_args=dict(num_tasks=num_tasks))


def test_pcgrad_projects_two_conflicting_gradients():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])  # g1 . g2 = -1
    # g1' = g1 + 1/2 g2 = (0.5, 0.5); g2' = g2 + g1 = (0, 1)
    out = build('PCGrad').combine(g, torch.ones(2))
    torch.testing.assert_close(out, torch.tensor([0.5, 1.5]))
    # no conflict: the plain sum (EW)
    g = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    torch.testing.assert_close(build('PCGrad').combine(g, torch.ones(2)), g.sum(0))


def test_mgda_min_norm_point_of_two_gradients():
    # the hull of (1, 0) and (0, 2): min-norm point at gamma = 4/5, i.e. (0.8, 0.4)
    g = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    out = build('MGDA').combine(g, torch.ones(2))
    torch.testing.assert_close(out, torch.tensor([0.8, 0.4]))
    # a gradient inside the other's direction: the min-norm point is the shorter one
    np.testing.assert_allclose(min_norm_weights(np.array([[1.0, 2.0], [2.0, 4.0]])), [1, 0])


def test_mgda_min_norm_of_three_gradients_is_the_hull_point_nearest_zero():
    # equilateral triangle around the origin: the origin (weights 1/3 each) is in the hull
    angles = torch.tensor([0.0, 2.0, 4.0]) * np.pi / 3
    g = torch.stack([angles.cos(), angles.sin()], 1)
    np.testing.assert_allclose(min_norm_weights((g @ g.T).numpy()), [1 / 3] * 3, atol=1e-5)
    # 'l2' normalisation: alpha from unit gradients, applied to the raw ones
    g = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    out = build('MGDA', normalization='l2').combine(g, torch.ones(2))
    torch.testing.assert_close(out, torch.tensor([1.0, 0.5]))


def test_mgda_ub_weights_from_the_representation_gram_matrix():
    # dL/dZ rows (1, 0) and (0, 2): the min-norm point gamma = 4/5 as for MGDA on parameters
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    w = build('MGDAUB')
    torch.testing.assert_close(w.combine(z, torch.ones(2)), torch.tensor([0.8, 0.4]))
    torch.testing.assert_close(w.weights(torch.ones(2), z @ z.T), torch.tensor([0.8, 0.2]))
    # 'loss' normalisation with losses (1, 2): rows (1, 0), (0, 1) -> alpha (1/2, 1/2)
    w = build('MGDAUB', normalization='loss')
    torch.testing.assert_close(w.weights(torch.tensor([1.0, 2.0]), z @ z.T),
                               torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="'l1'"):
        build('MGDAUB', normalization='l1')


def test_imtl_l_scales_take_adams_first_step_and_reach_one_over_the_loss():
    w = build('IMTLL', lr=0.1)
    losses = torch.tensor([2.0, 0.5])
    # s = 0: weights 1; gradient e^s L - 1 = (1, -0.5): Adam's first step is -lr * sign
    torch.testing.assert_close(w.weights(losses), torch.ones(2))
    torch.testing.assert_close(w.weights(losses), torch.tensor([-0.1, 0.1]).exp())
    for _ in range(300):
        weights = w.weights(losses)
    torch.testing.assert_close(weights * losses, torch.ones(2), atol=1e-2, rtol=0)
    # a task without a loss in the step gets no gradient
    w = build('IMTLL', lr=0.1)
    w.weights(torch.tensor([2.0, float('nan')]))
    assert w.scales.log_scale[1] == 0 and w.scales.log_scale[0] < 0


def test_imtl_scales_the_losses_then_balances_the_scaled_gradients():
    w = build('IMTL', lr=0.1)
    losses = torch.tensor([2.0, 0.5])
    torch.testing.assert_close(w.loss_scales(losses), torch.ones(2))
    scales = w.loss_scales(losses)  # IMTL-L's second step, as IMTLL's
    torch.testing.assert_close(scales, torch.tensor([-0.1, 0.1]).exp())
    # orthogonal rows (a, 0), (0, b) scaled by c: equal projections at (x, x) with
    # alpha_1 c_1 a = alpha_2 c_2 b = x, alpha_1 + alpha_2 = 1 -> x = c1 a c2 b / (c1 a + c2 b)
    g = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    ca, cb = 3 * scales[0], 1 * scales[1]
    x = ca * cb / (ca + cb)
    torch.testing.assert_close(w.combine(scales[:, None] * g, losses), torch.stack([x, x]))


def test_cagrad_with_c_zero_is_the_mean_and_any_task_count_works():
    g = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(build('CAGrad', 5, c=0.0).combine(g, torch.ones(5)), g.mean(0))
    # orthogonal unit gradients: w = uniform by symmetry, g = (1 + c) g0 / (1 + c^2)
    g = torch.eye(4)
    out = build('CAGrad', 4, c=0.5).combine(g, torch.ones(4))
    torch.testing.assert_close(out, torch.full((4, ), 0.25 * 1.5 / 1.25), atol=1e-5, rtol=0)


def test_cagrad_lower_bounds_the_worst_task_improvement():
    # CAGrad maximises the worst local improvement min_t g_t . d within ||d - g0|| <= c||g0||
    g = torch.tensor([[1.0, 0.0], [-0.9, 0.3], [0.2, 1.0]])
    c = 0.4
    d = build('CAGrad', 3, c=c, rescale=0).combine(g, torch.ones(3))
    g0 = g.mean(0)
    assert (d - g0).norm() <= c * g0.norm() + 1e-5
    worst = (g @ d).min()
    for angle in np.linspace(0, 2 * np.pi, 90, endpoint=False):  # points on that ball
        other = g0 + c * g0.norm() * torch.tensor([np.cos(angle), np.sin(angle)]).float()
        assert worst >= (g @ other).min() - 1e-4


def test_imtl_gives_equal_projections_on_every_task_direction():
    g = torch.tensor([[3.0, 0.0, 0.0], [1.0, 2.0, 0.0], [0.0, 1.0, 1.0]])
    out = build('IMTLG', 3).combine(g, torch.ones(3))
    proj = (g / g.norm(dim=1, keepdim=True)) @ out
    torch.testing.assert_close(proj, proj.mean().expand(3))


def test_nash_mtl_solves_the_bargaining_condition():
    g = torch.tensor([[2.0, 0.0], [0.0, 0.5]])  # orthogonal: alpha_t ||g_t||^2 = 1/alpha_t
    m = (g @ g.T).numpy()
    alpha = nash_weights(m)
    np.testing.assert_allclose(alpha, [0.5, 2.0], rtol=1e-8)
    g = torch.randn(4, 9, generator=torch.Generator().manual_seed(1))
    m = (g @ g.T).double().numpy()
    alpha = nash_weights(m)
    np.testing.assert_allclose(m @ alpha, 1 / alpha, rtol=1e-6)
    out = build('NashMTL', 4, max_norm=0).combine(g, torch.ones(4))
    a = nash_weights(m / np.linalg.norm(m))
    torch.testing.assert_close(out, torch.as_tensor(a).float() @ g, atol=1e-5, rtol=1e-5)


def test_aligned_mtl_sums_orthogonal_equal_norm_components():
    g = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    # aligned gradients: sigma_min times the unit directions, summed
    torch.testing.assert_close(build('AlignedMTL').combine(g, torch.ones(2)),
                               torch.tensor([1.0, 1.0]))


def test_gradvac_moves_a_pair_below_its_target_to_the_target():
    w = build('GradVac', beta=1.0)
    w.targets.fill_(0.5)
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # cos = 0 < 0.5
    out = w.combine(g, torch.ones(2))
    # each g_i' gets a multiple of g_j until cos(g_i', g_j) = 0.5: g_1' = (1, 1/sqrt 3)
    c = 1 / np.sqrt(3)
    torch.testing.assert_close(out, torch.tensor([1 + c, 1 + c]).float())
    # beta = 1: the targets become the cosines measured before the correction
    assert w.targets[0, 1] == 0 and w.targets[1, 0] == 0


def test_dbmtl_balances_log_loss_gradient_norms():
    w = build('DBMTL', beta=0.0)
    g = torch.tensor([[4.0, 0.0], [0.0, 1.0]])
    out = w.combine(g, torch.tensor([2.0, 1.0]))  # log-loss grads (2, 0), (0, 1)
    torch.testing.assert_close(out, torch.tensor([2.0, 2.0]), atol=1e-6, rtol=0)


def test_gradnorm_raises_the_weight_of_the_task_with_the_small_gradient():
    w = build('GradNorm', alpha=0.0, lr=0.05)
    g = torch.tensor([[10.0, 0.0], [0.0, 1.0]])
    for _ in range(20):
        w.combine(g, torch.ones(2))
    weights = w.loss_weights.detach()
    assert weights[1] > weights[0] and torch.isclose(weights.sum(), torch.tensor(2.0))


def test_fmtl_combines_loss_and_flat_directions_separately():
    w = build('FMTL', weighting=dict(type='PCGrad'))
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    sam = g + torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    torch.testing.assert_close(w.combine_flat(g, sam, torch.ones(2)),
                               torch.tensor([0.5, 1.5]) + torch.tensor([0.0, 2.0]))


def test_uw_log_variances_move_towards_the_log_losses():
    w = build('UW', init=0.0, lr=0.05)
    losses = torch.tensor([4.0, 0.25])
    for _ in range(300):
        weights = w.weights(losses)
    # exp(s) -> L: the large loss gets a large variance and a small weight
    torch.testing.assert_close(w.log_var.detach(), losses.log(), atol=0.05, rtol=0)
    assert weights[0] < 1 / 2 < weights[1]
    # one task per step: only the present task's variance moves
    w = build('UW', init=0.0, lr=0.05)
    w.weights(torch.tensor([4.0, float('nan')]))
    assert w.log_var[0] > 0 and w.log_var[1] == 0


def test_gls_weights_give_the_geometric_mean_gradient():
    losses = torch.tensor([2.0, 8.0], requires_grad=True)
    (losses.prod() ** 0.5).backward()
    torch.testing.assert_close(build('GLS').weights(losses.detach()), losses.grad)


def test_dwa_weights_from_the_last_two_window_means():
    w = build('DWA', temperature=2.0, window=1)
    assert torch.equal(w.weights(torch.tensor([1.0, 1.0])), torch.ones(2))
    assert torch.equal(w.weights(torch.tensor([2.0, 0.5])), torch.ones(2))
    ratio = torch.tensor([2.0, 0.5])
    torch.testing.assert_close(w.weights(torch.tensor([1.0, 1.0])),
                               2 * torch.softmax(ratio / 2.0, 0))
    # a task absent from a window keeps its previous mean
    w.weights(torch.tensor([3.0, float('nan')]))
    torch.testing.assert_close(w.history[1], torch.tensor([3.0, 1.0]))


def test_rlw_draws_the_same_weights_from_the_same_seed():
    a, b = build('RLW', 3, seed=4), build('RLW', 3, seed=4)
    wa, wb = a.weights(torch.ones(3)), b.weights(torch.ones(3))
    assert torch.equal(wa, wb) and torch.isclose(wa.sum(), torch.tensor(3.0))


@pytest.mark.parametrize('name', ['RLW', 'PCGrad', 'GradVac'])
def test_random_draws_follow_the_run_seed_unless_seeded(name):
    """seed=None takes the run's seed (what randomness.seed passes to torch.manual_seed)."""
    def draws(**kwargs):
        generator = build(name, 4, **kwargs)
        generator = getattr(generator, 'order', generator).generator
        return torch.randn(8, generator=generator)

    torch.manual_seed(7)
    run_7 = draws()
    torch.manual_seed(8)
    assert torch.equal(run_7, draws(seed=7)) and not torch.equal(run_7, draws())


def test_famo_lowers_the_weight_of_the_task_that_improves_faster():
    w = build('FAMO', lr=0.1)
    for _ in range(10):
        weights = w.weights(torch.tensor([1.0, 1.0]))
        w.after_step(torch.tensor([0.5, 0.99]))  # task 0 halves its loss, task 1 barely moves
    assert weights[0] < weights[1]


@pytest.mark.parametrize('name', GRADIENT_METHODS + LOSS_METHODS)
def test_state_round_trips(name):
    a = build(name, 3)
    g = torch.randn(3, 5, generator=torch.Generator().manual_seed(2))
    losses = torch.tensor([1.0, 2.0, 3.0])
    for _ in range(2):
        a.loss_scales(losses)
        a.combine(g, losses) if a.needs_grads or a.needs_representation_grads \
            else a.weights(losses)
        if a.needs_losses_after_step:
            a.after_step(losses / 2)
    b = build(name, 3)
    b.load_state_dict(a.state_dict())
    assert str(a.loss_scales(losses)) == str(b.loss_scales(losses))
    out_a = a.combine(g, losses)
    out_b = b.combine(g, losses)
    torch.testing.assert_close(out_a, out_b)
