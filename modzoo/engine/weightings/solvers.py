"""Small convex problems over the task weights (T variables, float64, on the CPU)."""
import numpy as np
import torch
from scipy.optimize import minimize


def gram(grads):
    """grads: [T, P] -> the [T, T] float64 numpy matrix of their inner products."""
    g = grads.double()
    return (g @ g.T).cpu().numpy()


def minimize_on_simplex(fun, jac, num_tasks):
    """argmin of a convex ``fun(w)`` over ``{w >= 0, sum w = 1}`` (SLSQP from uniform)."""
    start = np.full(num_tasks, 1.0 / num_tasks)
    result = minimize(fun, start, jac=jac, method='SLSQP', bounds=[(0.0, 1.0)] * num_tasks,
                      constraints=[dict(type='eq', fun=lambda w: w.sum() - 1.0,
                                        jac=lambda w: np.ones_like(w))],
                      options=dict(ftol=1e-12, maxiter=200))
    w = np.clip(result.x, 0.0, None)
    return w / w.sum()


def min_norm_weights(gram_matrix):
    """The w on the simplex minimising ``||sum_t w_t g_t||^2 = w^T M w`` (M: [T, T] Gram).

    Two tasks in closed form (Sener and Koltun 2018, Alg. 1); more with SLSQP.
    """
    m = np.asarray(gram_matrix, dtype=np.float64)
    scale = np.abs(m).max()
    if scale == 0:
        return np.full(len(m), 1.0 / len(m))
    m = m / scale
    if len(m) == 1:
        return np.ones(1)
    if len(m) == 2:
        denom = m[0, 0] + m[1, 1] - 2 * m[0, 1]
        gamma = 0.5 if denom <= 0 else np.clip((m[1, 1] - m[0, 1]) / denom, 0.0, 1.0)
        return np.array([gamma, 1.0 - gamma])
    return minimize_on_simplex(lambda w: w @ m @ w, lambda w: 2 * m @ w, len(m))


def nash_weights(gram_matrix, start=None, iters=100, tol=1e-10):
    """The alpha > 0 with ``M alpha = 1 / alpha`` (Nash-MTL's bargaining solution).

    It is the minimiser of the strictly convex ``f(a) = a^T M a / 2 - sum log a`` (its
    gradient is ``M a - 1/a``), found by damped Newton steps that keep ``a > 0``.
    """
    m = np.asarray(gram_matrix, dtype=np.float64)
    a = np.ones(len(m)) if start is None else np.asarray(start, dtype=np.float64).copy()

    def f(x):
        return 0.5 * x @ m @ x - np.log(x).sum()

    for _ in range(iters):
        grad = m @ a - 1.0 / a
        if np.linalg.norm(grad) < tol:
            break
        hess = m + np.diag(1.0 / a ** 2)
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while np.any(a - t * step <= 0) or f(a - t * step) > f(a) - 0.25 * t * grad @ step:
            t *= 0.5
            if t < 1e-12:
                return a
        a = a - t * step
    return a


def as_tensor(weights, like):
    return torch.as_tensor(np.asarray(weights), dtype=like.dtype, device=like.device)
