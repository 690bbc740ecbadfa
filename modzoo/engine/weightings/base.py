"""The interface every multi-task weighting implements."""
from typing import Optional

import torch
from mmengine.dist import broadcast_object_list


class Weighting:
    """Turns the per-task losses (and gradients) of one step into one update direction.

    A weighting is built by :class:`MultiTaskOptimWrapper` with ``num_tasks`` (T) once it
    knows the model's tasks. The wrapper hands it *global* values: in a distributed run the
    losses and per-task gradients are averaged across ranks first, so every rank computes
    the same update and keeps the same state.

    Class attributes say what a method needs from a step:

    - ``needs_grads``: one gradient per task on the shared parameters (T backward passes);
      the wrapper calls :meth:`combine`. Otherwise it calls :meth:`weights` and runs a
      single backward of ``sum_t w_t L_t``.
    - ``needs_all_tasks``: every task's loss in every step (one data source labelling all
      tasks, or ``TaskBalancedSampler(mode='all_sources')``).
    - ``needs_losses_after_step``: :meth:`after_step` gets the losses of the same batch
      recomputed after the update (one extra forward pass, no backward).
    - ``needs_representation_grads``: :meth:`weights` also gets the ``[T, T]`` Gram matrix
      of the task losses' gradients with respect to the shared representation (what the
      backbone returns): T backward passes through the heads only, then one backward of
      ``sum_t w_t L_t``.

    Stateful methods keep their state on the instance and list it in :meth:`state_dict`
    (saved with the optimizer state, restored on ``--resume``).
    """
    needs_grads = False
    needs_all_tasks = False
    needs_losses_after_step = False
    needs_representation_grads = False

    def __init__(self, num_tasks):
        if num_tasks < 1:
            raise ValueError(f'{type(self).__name__} needs at least one task, got {num_tasks}')
        self.num_tasks = num_tasks

    def weights(self, losses):
        """losses: [T] detached global losses, NaN where the step has no batch of a task.

        Returns [T] weights (the values at NaN entries are not used).
        """
        raise NotImplementedError(f'{type(self).__name__} is a gradient method: use combine()')

    def combine(self, grads, losses):
        """grads: [T, P] per-task gradients of the shared parameters; losses: [T].

        Returns the [P] gradient to apply. A loss weighting combines with its weights.
        """
        return self.weights(losses).to(grads) @ grads

    def loss_scales(self, losses):
        """losses: [T] detached global losses. A gradient method may return [T] factors
        that scale each task's loss before its backward pass (its head's gradient and its
        row of ``grads`` both); None (the default) leaves them as they are."""
        return None

    def after_step(self, losses):
        """losses: [T] of the same batch after the update (``needs_losses_after_step``)."""

    def state_dict(self):
        return {}

    @torch.no_grad()
    def load_state_dict(self, state):
        for name, value in state.items():
            current = getattr(self, name)
            if isinstance(current, torch.Tensor):
                current.copy_(value)
            elif hasattr(current, 'load_state_dict'):
                current.load_state_dict(value)
            else:
                setattr(self, name, value)


def present(losses):
    """[T] bool mask of the tasks that have a loss in this step."""
    return ~torch.isnan(losses)


def seeded_generator(seed: Optional[int]) -> torch.Generator:
    """A CPU generator for a method's random draws, the same on every rank: seeded with
    ``seed``, or, when it is None, with the run's seed (rank 0's ``torch.initial_seed()``,
    which mmengine's ``randomness.seed`` sets), so that each seed of a run draws anew."""
    if seed is None:
        seed = [torch.initial_seed()]
        broadcast_object_list(seed)
        seed = seed[0]
    return torch.Generator().manual_seed(seed)
