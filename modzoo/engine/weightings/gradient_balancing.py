"""Gradient methods that balance the sizes of the task gradients: GradNorm, DB-MTL.

Both need every task's gradient in every step.
"""
import torch

from modzoo.registry import WEIGHTINGS
from .conflict import _GradientMethod


@WEIGHTINGS.register_module()
class GradNorm(_GradientMethod):
    """GradNorm (Chen et al., ICML 2018), on the whole shared gradient.

    Returns ``sum_t w_t g_t``, then moves the weights w down the gradient of
    ``sum_t | w_t ||g_t|| - mean_k(w_k ||g_k||) r_t^alpha |`` (the target held constant),
    where ``r_t = (L_t / L_t(0)) / mean_k(L_k / L_k(0))`` is the task's relative inverse
    training rate, and renormalises them to sum to T.

    Args:
        alpha (float): strength of the pull towards equal training rates (paper: 1.5 on
            NYUv2).
        lr (float): Adam learning rate of the weights (the paper trains them with the
            network's optimizer; their own Adam keeps the update scale-free and the same on
            every rank).
    """

    def __init__(self, num_tasks, alpha=1.5, lr=0.025):
        super().__init__(num_tasks)
        self.alpha = alpha
        self.loss_weights = torch.ones(num_tasks, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.loss_weights], lr=lr)
        self.initial_losses = torch.full((num_tasks, ), float('nan'))

    def combine(self, grads, losses):
        losses = losses.detach().float().cpu()
        if torch.isnan(self.initial_losses).any():
            self.initial_losses = losses.clone()
        w = self.loss_weights.detach().clone()
        combined = w.to(grads) @ grads
        norms = grads.norm(dim=1).float().cpu()
        rate = losses / self.initial_losses
        rate = rate / rate.mean()
        with torch.enable_grad():
            weighted = self.loss_weights * norms
            target = (weighted.mean() * rate ** self.alpha).detach()
            objective = (weighted - target).abs().sum()
            self.optimizer.zero_grad()
            objective.backward()
        self.optimizer.step()
        with torch.no_grad():
            self.loss_weights.clamp_(min=1e-6)
            self.loss_weights.mul_(self.num_tasks / self.loss_weights.sum())
        return combined

    def state_dict(self):
        return dict(loss_weights=self.loss_weights.detach().clone(),
                    optimizer=self.optimizer.state_dict(),
                    initial_losses=self.initial_losses.clone())


@WEIGHTINGS.register_module()
class DBMTL(_GradientMethod):
    """Dual-balancing MTL (Lin et al., "Dual-Balancing for Multi-Task Learning", 2023).

    Loss scale: each task descends ``log L_t``, whose gradient is ``g_t / L_t``. Gradient
    magnitude: an EMA ``h_t <- b_k h_t + (1 - b_k) g_t / L_t`` with ``b_k = beta / k^sigma``
    at step k; returns ``sum_t (max_j ||h_j|| / ||h_t||) h_t``, every task's term as long as
    the largest.

    Args:
        beta (float): EMA factor (LibMTL default 0.9).
        beta_sigma (float): its decay exponent sigma (LibMTL default 0.5).
    """

    def __init__(self, num_tasks, beta=0.9, beta_sigma=0.5):
        super().__init__(num_tasks)
        self.beta, self.beta_sigma = beta, beta_sigma
        self.ema = None
        self.step = 0

    def combine(self, grads, losses):
        self.step += 1
        log_grads = grads / (losses.to(grads)[:, None] + 1e-8)
        if self.ema is None or self.ema.shape != grads.shape:
            self.ema = torch.zeros_like(grads)
        b = self.beta / self.step ** self.beta_sigma
        self.ema = log_grads + b * (self.ema - log_grads)
        norms = self.ema.norm(dim=1)
        scale = norms.max() / (norms + 1e-8)
        return scale @ self.ema

    def state_dict(self):
        return dict(ema=None if self.ema is None else self.ema.clone(), step=self.step)

    def load_state_dict(self, state):
        self.ema, self.step = state['ema'], state['step']
