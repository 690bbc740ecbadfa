"""Loss weightings: one backward pass of ``sum_t w_t L_t`` per step.

Each gets the global per-task losses ``[T]`` (NaN for tasks without a batch in the step)
and returns weights ``[T]``. All but GLS also work when a step holds one task.
"""
import torch

from modzoo.registry import WEIGHTINGS
from .base import Weighting, present, seeded_generator


@WEIGHTINGS.register_module()
class EW(Weighting):
    """Equal weighting: ``sum_t L_t``, the plain sum mmengine takes (no extra cost).

    Regime: any.
    """

    def weights(self, losses):
        return torch.ones_like(losses)


@WEIGHTINGS.register_module()
class UW(Weighting):
    """Uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018).

    Minimises ``sum_t L_t / (2 exp(s_t)) + s_t / 2`` over the log-variances ``s_t``
    (``s = log sigma^2``), so ``w_t = 1 / (2 exp(s_t))``; at the optimum ``exp(s_t) = L_t``:
    a task whose loss is large gets a large variance and a small weight.

    Args:
        init (float): initial ``s_t`` (LibMTL: -0.5, i.e. w = 0.82).
        lr (float): Adam learning rate of ``s`` (its own optimizer, not the model's, so the
            update is the same on every rank and needs no parameter group).

    Regime: any (a task's ``s_t`` moves in the steps that hold it).
    """

    def __init__(self, num_tasks, init=-0.5, lr=1e-3):
        super().__init__(num_tasks)
        self.log_var = torch.full((num_tasks, ), float(init), requires_grad=True)
        self.optimizer = torch.optim.Adam([self.log_var], lr=lr)

    def weights(self, losses):
        mask = present(losses)
        w = (0.5 * torch.exp(-self.log_var)).detach()
        with torch.enable_grad():
            s = self.log_var[mask]
            objective = (losses[mask] / (2 * s.exp()) + s / 2).sum()
            self.optimizer.zero_grad()
            objective.backward()
        self.optimizer.step()
        return w

    def state_dict(self):
        return dict(log_var=self.log_var.detach().clone(), optimizer=self.optimizer.state_dict())


class LearnedLossScales:
    """IMTL-L's loss scales (Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021).

    Each task's loss becomes ``e^{s_t} L_t - s_t``; ``s`` (init 0) descends it, with gradient
    ``e^{s_t} L_t - 1``, towards ``e^{s_t} = 1 / L_t``, where every scaled loss is 1 (the
    scale-invariant loss). Calling it with the step's losses returns the scales ``e^s`` [T]
    to use, then takes one Adam step on ``s`` (its own optimizer, as :class:`UW`: the same
    update on every rank; the paper trains ``s`` with the network's optimizer). Tasks
    without a loss in the step (NaN) give no gradient.
    """

    def __init__(self, num_tasks, lr):
        self.log_scale = torch.zeros(num_tasks, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.log_scale], lr=lr)

    def __call__(self, losses):
        mask = present(losses)
        scales = self.log_scale.detach().exp()
        with torch.enable_grad():
            s = self.log_scale[mask]
            objective = (s.exp() * losses[mask].cpu() - s).sum()
            self.optimizer.zero_grad()
            objective.backward()
        self.optimizer.step()
        return scales.to(losses.device)

    def state_dict(self):
        return dict(log_scale=self.log_scale.detach().clone(),
                    optimizer=self.optimizer.state_dict())

    @torch.no_grad()
    def load_state_dict(self, state):
        self.log_scale.copy_(state['log_scale'])
        self.optimizer.load_state_dict(state['optimizer'])


class WithLossScales:
    """Mixin: the state of a weighting is its :class:`LearnedLossScales` ``self.scales``."""

    def state_dict(self):
        return self.scales.state_dict()

    def load_state_dict(self, state):
        self.scales.load_state_dict(state)


@WEIGHTINGS.register_module()
class IMTLL(WithLossScales, Weighting):
    """IMTL-L, the loss part of Impartial MTL (Liu et al., ICLR 2021), on its own: the
    weights are the learned scales ``w_t = e^{s_t}`` of :class:`LearnedLossScales`, which
    drive every weighted loss towards 1. :class:`IMTL` adds the gradient part IMTL-G.

    Args:
        lr (float): Adam learning rate of the log-scales ``s`` (default 1e-3, as UW's).

    Regime: any (a task's ``s_t`` moves in the steps that hold it).
    """

    def __init__(self, num_tasks, lr=1e-3):
        super().__init__(num_tasks)
        self.scales = LearnedLossScales(num_tasks, lr)

    def weights(self, losses):
        return self.scales(losses)


@WEIGHTINGS.register_module()
class DWA(Weighting):
    """Dynamic weight average (Liu, Johns and Davison, CVPR 2019, MTAN).

    ``w_t = T softmax_t(r_t / temperature)`` with ``r_t = Lbar_t(k-1) / Lbar_t(k-2)``, the
    ratio of the task's mean loss over the last two completed windows; ``w = 1`` until two
    windows are complete. The paper averages over epochs: set ``window`` to the number of
    iterations of an epoch for its schedule.

    Args:
        temperature (float): softmax temperature (paper: 2).
        window (int): iterations per averaging window.

    Regime: any (a window's mean of a task is over the steps that hold it).
    """

    def __init__(self, num_tasks, temperature=2.0, window=100):
        super().__init__(num_tasks)
        self.temperature, self.window = temperature, int(window)
        self.history = torch.full((2, num_tasks), float('nan'))  # means of windows k-2, k-1
        self.sums = torch.zeros(num_tasks, dtype=torch.float64)
        self.counts = torch.zeros(num_tasks, dtype=torch.float64)
        self.step = 0

    def weights(self, losses):
        if torch.isnan(self.history).any():
            w = torch.ones_like(losses)
        else:
            ratio = self.history[1] / self.history[0]
            w = self.num_tasks * torch.softmax(ratio / self.temperature, 0).to(losses)
        mask = present(losses)
        self.sums[mask] += losses[mask].double()
        self.counts[mask] += 1
        self.step += 1
        if self.step % self.window == 0:
            seen = self.counts > 0
            mean = torch.where(seen, self.sums / self.counts.clamp(min=1),
                               self.history[1].double())
            self.history = torch.stack([self.history[1], mean.float()])
            self.sums.zero_()
            self.counts.zero_()
        return w

    def state_dict(self):
        return dict(history=self.history.clone(), sums=self.sums.clone(),
                    counts=self.counts.clone(), step=self.step)


@WEIGHTINGS.register_module()
class RLW(Weighting):
    """Random loss weighting (Lin et al., "Reasonable Effectiveness of Random Weighting",
    TMLR 2022): fresh weights every step, ``softmax(z)`` with ``z ~ N(0, 1)``.

    The paper's weights sum to 1; here they are scaled by T so that their mean is 1, as for
    EW, and the same learning rate applies. The draws come from a generator seeded with
    ``seed`` (None: the run's ``randomness.seed``), the same on every rank.

    Regime: any.
    """

    def __init__(self, num_tasks, seed=None):
        super().__init__(num_tasks)
        self.generator = seeded_generator(seed)

    def weights(self, losses):
        z = torch.randn(self.num_tasks, generator=self.generator)
        return self.num_tasks * torch.softmax(z, 0).to(losses)

    def state_dict(self):
        return dict(generator_state=self.generator.get_state())

    def load_state_dict(self, state):
        self.generator.set_state(state['generator_state'])


@WEIGHTINGS.register_module()
class GLS(Weighting):
    """Geometric loss strategy (Chennupati et al., CVPR-W 2019, MultiNet++): minimise
    ``(prod_t L_t)^(1/T)``. Its gradient is ``sum_t G / (T L_t) grad L_t`` with G the
    geometric mean, so ``w_t = G / (T L_t)`` (no hyper-parameters).

    Regime: every task in every step (the product needs all losses).
    """
    needs_all_tasks = True

    def weights(self, losses):
        log = torch.log(losses.clamp(min=1e-12))
        return torch.exp(log.mean() - log) / self.num_tasks


@WEIGHTINGS.register_module()
class FAMO(Weighting):
    """Fast adaptive multitask optimisation (Liu et al., NeurIPS 2023).

    Descends ``sum_t z_t log(L_t - m_t)`` normalised by ``c = sum_t z_t / (L_t - m_t)``, i.e.
    ``w_t = z_t / (c (L_t - m_t))`` with ``z = softmax(xi)``; after the update the logits
    ``xi`` take an Adam step (``lr``, ``weight_decay``) along ``-J_z^T delta``, where
    ``delta_t = log(L_t - m_t) - log(L'_t - m_t)`` is each task's log-loss decrease on the
    same batch (the official recipe: one extra forward pass per step, no backward).

    Args:
        lr (float): learning rate of the logits (paper: 0.025).
        weight_decay (float): their decay gamma (paper: 1e-3).
        min_losses (float): the losses' lower bound m (0 for the losses here).

    Regime: any. With one task per step the other tasks' last seen losses stand in for
    ``c``, and only the present task's delta updates the logits.
    """
    needs_losses_after_step = True

    def __init__(self, num_tasks, lr=0.025, weight_decay=1e-3, min_losses=0.0):
        super().__init__(num_tasks)
        self.logits = torch.zeros(num_tasks, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.logits], lr=lr, weight_decay=weight_decay)
        self.min_losses = float(min_losses)
        self.last = torch.full((num_tasks, ), float('nan'))  # last seen loss of each task
        self.before = torch.full((num_tasks, ), float('nan'))  # losses of the current step

    def _gap(self, losses):
        return (losses - self.min_losses).clamp(min=0) + 1e-8

    def weights(self, losses):
        mask = present(losses)
        self.last[mask] = losses[mask].float()
        self.before = losses.detach().float().clone()
        known = present(self.last)
        z = torch.softmax(self.logits.detach(), 0)
        c = (z[known] / self._gap(self.last[known])).sum()
        return (z / (c * self._gap(self.last))).to(losses)

    def after_step(self, losses):
        delta = torch.log(self._gap(self.before)) - torch.log(self._gap(losses.float()))
        delta = torch.nan_to_num(delta, nan=0.0)  # tasks without a batch in the step
        with torch.enable_grad():
            z = torch.softmax(self.logits, 0)
            grad, = torch.autograd.grad(z, self.logits, grad_outputs=delta)
        self.optimizer.zero_grad()
        self.logits.grad = grad
        self.optimizer.step()

    def state_dict(self):
        return dict(logits=self.logits.detach().clone(), optimizer=self.optimizer.state_dict(),
                    last=self.last.clone())
