"""Gradient methods that weight the task gradients by solving for a common direction:
MGDA, MGDA-UB, IMTL-G, IMTL, Nash-MTL, Aligned-MTL.

Each ``combine(grads [T, P], losses [T]) -> [P]`` returns ``sum_t alpha_t g_t`` for weights
alpha of its paper's rule; they need every task's gradient in every step.
"""
import numpy as np
import torch

from modzoo.registry import WEIGHTINGS
from .base import Weighting
from .conflict import _GradientMethod
from .loss_based import LearnedLossScales, WithLossScales
from .solvers import as_tensor, gram, min_norm_weights, nash_weights

NORMALIZATIONS = ('none', 'l2', 'loss', 'loss+')


def mgda_weights(gram_matrix, losses, normalization):
    """MGDA's alpha [T] (numpy) from the [T, T] Gram matrix of the task gradients: the
    min-norm point of the hull of ``g_t / n_t`` (``n_t`` of ``normalization``)."""
    norms = np.sqrt(np.clip(np.diag(gram_matrix), 1e-24, None))
    losses = losses.detach().double().cpu().numpy()
    n = {'none': np.ones_like(norms), 'l2': norms, 'loss': losses,
         'loss+': losses * norms}[normalization]
    return min_norm_weights(gram_matrix / np.outer(n, n))


def _check_normalization(name, normalization):
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"{name} normalization must be 'none', 'l2', 'loss' or 'loss+', got "
                         f'{normalization!r}')


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

    :class:`MGDAUB` takes alpha from the gradients of the shared representation instead.
    """

    def __init__(self, num_tasks, normalization='none'):
        super().__init__(num_tasks)
        _check_normalization('MGDA', normalization)
        self.normalization = normalization

    def combine(self, grads, losses):
        alpha = mgda_weights(gram(grads), losses, self.normalization)
        return as_tensor(alpha, grads) @ grads


@WEIGHTINGS.register_module()
class MGDAUB(Weighting):
    """MGDA-UB: MGDA on the upper bound (Sener and Koltun, NeurIPS 2018, Sec. 3.3).

    The task gradients with respect to the shared representation Z (the ``[T, R]`` matrix
    of ``dL_t / dZ``) replace the parameter gradients: alpha is MGDA's min-norm weighting
    of them (:func:`mgda_weights`, same normalisations), and the update is one backward
    pass of ``sum_t alpha_t L_t``, so every parameter, heads included, gets
    ``sum_t alpha_t dL_t / dtheta`` (as the official code's second pass). Z is what the
    model's backbone returns (every feature map and the class token); a neck counts as
    above Z. Cost: T backward passes through the heads (and neck) only, one full backward.

    :class:`MultiTaskOptimWrapper` computes the Gram matrix ``[T, T]`` of the rows of
    ``dL_t / dZ`` (summed over the ranks, so every rank gets the global batch's) and calls
    :meth:`weights`; :meth:`combine` is the same rule on a given ``[T, R]`` matrix.

    Args:
        normalization (str): as :class:`MGDA` (default 'none'; the paper's runs 'loss+').

    Regime: every task in every step.
    """
    needs_all_tasks = True
    needs_representation_grads = True

    def __init__(self, num_tasks, normalization='none'):
        super().__init__(num_tasks)
        _check_normalization('MGDAUB', normalization)
        self.normalization = normalization

    def weights(self, losses, gram_matrix=None):
        """losses: [T]; gram_matrix: [T, T] (numpy or tensor) of the representation
        gradients. Returns alpha [T]."""
        if gram_matrix is None:
            raise ValueError('MGDAUB.weights needs the Gram matrix of the representation '
                             'gradients (MultiTaskOptimWrapper passes it)')
        m = torch.as_tensor(gram_matrix, dtype=torch.float64).cpu().numpy()
        return as_tensor(mgda_weights(m, losses, self.normalization), losses.float())

    def combine(self, grads, losses):
        """grads: [T, R] gradients of the representation -> their min-norm combination."""
        return self.weights(losses, gram(grads)).to(grads) @ grads


@WEIGHTINGS.register_module()
class IMTLG(_GradientMethod):
    """Impartial MTL, gradient part IMTL-G (Liu et al., "Towards Impartial Multi-task
    Learning", ICLR 2021).

    Finds the alpha (summing to 1) whose ``g = sum_t alpha_t g_t`` has equal projections on
    every task's unit gradient ``u_t``: with ``D_t = g_1 - g_t`` and ``U_t = u_1 - u_t``
    (t = 2..T), ``alpha_{2:T} = g_1 U^T (D U^T)^-1`` and ``alpha_1 = 1 - sum alpha_{2:T}``.
    No hyper-parameters. :class:`IMTL` adds the loss part.
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
class IMTL(WithLossScales, IMTLG):
    """Impartial MTL as the paper trains it (Liu et al., ICLR 2021): IMTL-L and IMTL-G.

    Each task's loss is scaled first, ``e^{s_t} L_t`` (IMTL-L, :class:`LearnedLossScales`:
    the heads step along ``e^{s_t} dL_t``, the ``s_t`` towards ``e^{s_t} L_t = 1``); the
    shared parameters step along IMTL-G's combination (:class:`IMTLG`) of the scaled
    gradients ``e^{s_t} g_t``.

    Args:
        lr (float): Adam learning rate of the log-scales ``s`` (see :class:`IMTLL`).

    Regime: every task in every step.
    """

    def __init__(self, num_tasks, lr=1e-3):
        super().__init__(num_tasks)
        self.scales = LearnedLossScales(num_tasks, lr)

    def loss_scales(self, losses):
        return self.scales(losses)


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
