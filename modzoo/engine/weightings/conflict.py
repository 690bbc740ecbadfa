"""Gradient methods that edit conflicting task gradients: PCGrad, GradVac, CAGrad.

Each ``combine(grads [T, P], losses [T]) -> [P]``; they need every task's gradient in every
step (one data source labelling all tasks, or ``TaskBalancedSampler(mode='all_sources')``).
"""
import numpy as np
import torch

from modzoo.registry import WEIGHTINGS
from .base import Weighting, seeded_generator
from .solvers import gram, minimize_on_simplex


class _GradientMethod(Weighting):
    needs_grads = True
    needs_all_tasks = True

    def weights(self, losses):
        raise NotImplementedError(f'{type(self).__name__} combines gradients, not losses')


class _RandomOrder:
    """Task orders drawn from a seeded generator (see :func:`seeded_generator`): every rank
    draws the same."""

    def __init__(self, seed):
        self.generator = seeded_generator(seed)

    def others(self, i, num_tasks):
        order = torch.randperm(num_tasks, generator=self.generator).tolist()
        return [j for j in order if j != i]


@WEIGHTINGS.register_module()
class PCGrad(_GradientMethod):
    """Projecting conflicting gradients (Yu et al., "Gradient Surgery for Multi-Task
    Learning", NeurIPS 2020, Alg. 1).

    For each task i, in a random order of the others j: when ``g_i' . g_j < 0`` remove the
    conflicting component, ``g_i' -= (g_i' . g_j) / ||g_j||^2 g_j``. Returns ``sum_i g_i'``
    (equal to EW's ``sum_i g_i`` when no pair conflicts). No hyper-parameters; ``seed``
    seeds the orders (None: the run's ``randomness.seed``).
    """

    def __init__(self, num_tasks, seed=None):
        super().__init__(num_tasks)
        self.order = _RandomOrder(seed)

    def combine(self, grads, losses):
        projected = grads.clone()
        sq_norms = (grads * grads).sum(1)
        for i in range(self.num_tasks):
            for j in self.order.others(i, self.num_tasks):
                dot = projected[i] @ grads[j]
                if dot < 0 and sq_norms[j] > 0:
                    projected[i] -= dot / sq_norms[j] * grads[j]
        return projected.sum(0)

    def state_dict(self):
        return dict(generator_state=self.order.generator.get_state())

    def load_state_dict(self, state):
        self.order.generator.set_state(state['generator_state'])


@WEIGHTINGS.register_module()
class GradVac(_GradientMethod):
    """Gradient vaccine (Wang et al., ICLR 2021), on the whole shared gradient.

    Keeps an EMA ``phi_hat_ij`` (decay ``beta``) of each pair's cosine similarity; when the
    current ``phi_ij = cos(g_i', g_j)`` falls below it, adds ``g_j`` to ``g_i'`` so that
    their cosine becomes ``phi_hat_ij``:
    ``g_i' += ||g_i'|| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2)) /
    (||g_j|| sqrt(1 - phi_hat^2)) g_j``. Returns ``sum_i g_i'``.

    Args:
        beta (float): EMA rate of the targets (paper: 1e-2; LibMTL's default 0.5).
        seed (int, optional): seeds the random order of the other tasks (None: the run's
            ``randomness.seed``).
    """

    def __init__(self, num_tasks, beta=1e-2, seed=None):
        super().__init__(num_tasks)
        self.beta = beta
        self.targets = torch.zeros(num_tasks, num_tasks)
        self.order = _RandomOrder(seed)

    def combine(self, grads, losses):
        vaccinated = grads.clone()
        norms = grads.norm(dim=1)
        for i in range(self.num_tasks):
            for j in self.order.others(i, self.num_tasks):
                norm_i = vaccinated[i].norm()
                if norm_i == 0 or norms[j] == 0:
                    continue
                phi = float(vaccinated[i] @ grads[j] / (norm_i * norms[j]))
                target = float(self.targets[i, j])
                if phi < target:
                    coef = norm_i * (target * np.sqrt(1 - phi ** 2)
                                     - phi * np.sqrt(1 - target ** 2)) / (
                                         norms[j] * np.sqrt(1 - target ** 2))
                    vaccinated[i] += coef * grads[j]
                self.targets[i, j] = (1 - self.beta) * target + self.beta * phi
        return vaccinated.sum(0)

    def state_dict(self):
        return dict(targets=self.targets.clone(), generator_state=self.order.generator.get_state())

    def load_state_dict(self, state):
        self.targets.copy_(state['targets'])
        self.order.generator.set_state(state['generator_state'])


@WEIGHTINGS.register_module()
class CAGrad(_GradientMethod):
    """Conflict-averse gradient descent (Liu et al., NeurIPS 2021), for any number of tasks.

    With ``g0`` the mean gradient and ``phi = c^2 ||g0||^2``, finds the simplex weights
    ``w = argmin g_w . g0 + sqrt(phi) ||g_w||`` (``g_w = sum_t w_t g_t``) and returns
    ``(g0 + sqrt(phi) / ||g_w|| g_w) / (1 + c^2)``. c = 0 gives the mean gradient.
    (LibMTL's released version started the solver at ``ones(3) / 3``, so it only ran with
    three tasks; here the start is uniform over the T tasks.)

    Args:
        c (float): the radius of the ball around g0 (paper: 0.4 on NYUv2, 0.5 LibMTL).
        rescale (int): 0 none, 1 divide by ``1 + c^2`` (official default), 2 by ``1 + c``.
    """

    def __init__(self, num_tasks, c=0.4, rescale=1):
        super().__init__(num_tasks)
        if rescale not in (0, 1, 2):
            raise ValueError(f'CAGrad rescale must be 0, 1 or 2, got {rescale}')
        self.c, self.rescale = float(c), rescale

    def combine(self, grads, losses):
        g0 = grads.mean(0)
        if self.c == 0:
            return g0
        m = gram(grads)
        scale = np.abs(m).max() or 1.0
        m = m / scale  # argmin is scale-invariant once sqrt(phi) is scaled alike
        b = np.full(self.num_tasks, 1.0 / self.num_tasks)
        radius = self.c * np.sqrt(max(b @ m @ b, 0.0) + 1e-16)

        def fun(w):
            return w @ m @ b + radius * np.sqrt(w @ m @ w + 1e-16)

        def jac(w):
            return m @ b + radius * (m @ w) / np.sqrt(w @ m @ w + 1e-16)

        w = minimize_on_simplex(fun, jac, self.num_tasks)
        gw = torch.as_tensor(w, dtype=grads.dtype, device=grads.device) @ grads
        gw_norm = gw.norm()
        g0_norm = g0.norm()
        combined = g0 if gw_norm == 0 else g0 + self.c * g0_norm / gw_norm * gw
        return combined / {0: 1.0, 1: 1 + self.c ** 2, 2: 1 + self.c}[self.rescale]
