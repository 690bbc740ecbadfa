"""Gradient methods that weight the task gradients by solving for a common direction:
MGDA, IMTL-G, Nash-MTL, Aligned-MTL.

Each ``combine(grads [T, P], losses [T]) -> [P]`` returns ``sum_t alpha_t g_t`` for weights
alpha of its paper's rule; they need every task's gradient in every step.
"""
import numpy as np
import torch

from modzoo.registry import WEIGHTINGS
from .conflict import _GradientMethod
from .solvers import as_tensor, gram, min_norm_weights, nash_weights


@WEIGHTINGS.register_module()
class MGDA(_GradientMethod):
    """Multiple-gradient descent (Sener and Koltun, "Multi-Task Learning as Multi-Objective
    Optimization", NeurIPS 2018), on the parameter gradients.

    alpha is the min-norm point of the convex hull of the normalised gradients
    ``g_t / n_t`` (closed form for two tasks, SLSQP for more); as in the official code the
    update is ``sum_t alpha_t g_t`` of the raw gradients.

    Args:
        normalization (str): n_t = 1 ('none'), ``||g_t||`` ('l2'), ``L_t`` ('loss') or
            ``L_t ||g_t||`` ('loss+', the paper's choice for its experiments).

    MGDA-UB (gradients with respect to the shared representation instead of the
    parameters) is not implemented: the combination here needs the parameter gradients.
    """

    def __init__(self, num_tasks, normalization='none'):
        super().__init__(num_tasks)
        if normalization not in ('none', 'l2', 'loss', 'loss+'):
            raise ValueError("MGDA normalization must be 'none', 'l2', 'loss' or 'loss+', got "
                             f'{normalization!r}')
        self.normalization = normalization

    def combine(self, grads, losses):
        norms = grads.norm(dim=1).clamp(min=1e-12)
        n = {'none': torch.ones_like(norms), 'l2': norms, 'loss': losses.to(norms),
             'loss+': losses.to(norms) * norms}[self.normalization]
        alpha = min_norm_weights(gram(grads / n[:, None]))
        return as_tensor(alpha, grads) @ grads


@WEIGHTINGS.register_module()
class IMTL(_GradientMethod):
    """Impartial MTL, gradient part IMTL-G (Liu et al., ICLR 2021).

    Finds the alpha (summing to 1) whose ``g = sum_t alpha_t g_t`` has equal projections on
    every task's unit gradient ``u_t``: with ``D_t = g_1 - g_t`` and ``U_t = u_1 - u_t``
    (t = 2..T), ``alpha_{2:T} = g_1 U^T (D U^T)^-1`` and ``alpha_1 = 1 - sum alpha_{2:T}``.
    No hyper-parameters. (The loss part IMTL-L, learnable loss scales, is not included.)
    """

    def combine(self, grads, losses):
        if self.num_tasks == 1:
            return grads[0]
        g = grads.double()
        u = g / g.norm(dim=1, keepdim=True).clamp(min=1e-12)
        d, uu = g[:1] - g[1:], u[:1] - u[1:]
        rest = torch.linalg.solve((d @ uu.T).T, (g[0] @ uu.T))
        alpha = torch.cat([1 - rest.sum(0, keepdim=True), rest])
        return alpha.to(grads) @ grads


@WEIGHTINGS.register_module()
class NashMTL(_GradientMethod):
    """Nash-MTL (Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022).

    alpha solves ``(G G^T / ||G G^T||_F) alpha = 1 / alpha`` (the Nash bargaining solution;
    solved here exactly by Newton steps on its convex potential, where the official code
    runs up to 20 convex-concave iterations with cvxpy); the update is ``sum_t alpha_t g_t``,
    clipped to norm ``max_norm``.

    Args:
        update_weights_every (int): recompute alpha every this many steps (official: 1).
        max_norm (float): clip of the combined gradient's norm; 0 disables (official: 1).
    """

    def __init__(self, num_tasks, update_weights_every=1, max_norm=1.0):
        super().__init__(num_tasks)
        self.update_weights_every, self.max_norm = int(update_weights_every), float(max_norm)
        self.alpha = np.ones(num_tasks)
        self.step = 0

    def combine(self, grads, losses):
        if self.step % self.update_weights_every == 0:
            m = gram(grads)
            scale = np.linalg.norm(m)
            if scale > 0:
                self.alpha = nash_weights(m / scale, start=self.alpha)
        self.step += 1
        combined = as_tensor(self.alpha, grads) @ grads
        norm = combined.norm()
        if self.max_norm > 0 and norm > self.max_norm:
            combined = combined * (self.max_norm / norm)
        return combined

    def state_dict(self):
        return dict(alpha=self.alpha.tolist(), step=self.step)

    def load_state_dict(self, state):
        self.alpha, self.step = np.asarray(state['alpha'], dtype=np.float64), state['step']


@WEIGHTINGS.register_module()
class AlignedMTL(_GradientMethod):
    """Aligned-MTL (Senushkin et al., "Independent Component Alignment for Multi-Task
    Learning", CVPR 2023).

    With the eigendecomposition ``G G^T = V diag(lambda) V^T`` (eigenvalues below
    ``max(lambda) T eps`` dropped), the aligned gradients ``B G`` with
    ``B = sqrt(lambda_min) V diag(lambda)^-1/2 V^T`` are orthogonal with equal norms
    (the condition number of the system is 1); returns their sum, ``(1^T B) G``.
    No hyper-parameters.
    """

    def combine(self, grads, losses):
        lam, vec = np.linalg.eigh(gram(grads))
        tol = lam.max() * self.num_tasks * np.finfo(np.float32).eps
        keep = lam > tol
        if not keep.any():
            return grads.sum(0)
        lam, vec = lam[keep], vec[:, keep]
        b = np.sqrt(lam.min()) * (vec / np.sqrt(lam)) @ vec.T
        return as_tensor(b.sum(0), grads) @ grads
