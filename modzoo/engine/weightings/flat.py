"""F-MTL: task-based flat minima (sharpness-aware minimisation per task)."""
from modzoo.registry import WEIGHTINGS
from .conflict import _GradientMethod


@WEIGHTINGS.register_module()
class FMTL(_GradientMethod):
    """Task-based flat regions (Phan et al., "Improving Multi-task Learning via Seeking
    Task-based Flat Regions", arXiv 2211.13723).

    For each task t, :class:`MultiTaskOptimWrapper` computes its gradient g_t, moves the
    shared parameters by ``rho g_t / ||g_t||`` and the task's head by ``rho`` along its own
    normalised head gradient, and takes the gradient again there (``g_t^SAM``). The head
    steps with its SAM gradient; the shared parameters with
    ``combine({g_t}) + combine({g_t^SAM - g_t})``: the chosen ``weighting`` is applied
    separately to the loss directions and to the flatness directions (two instances, so a
    stateful method keeps one state for each).

    Args:
        weighting (dict): the combination, e.g. ``dict(type='PCGrad')`` (default EW).
        rho (float): the perturbation radius (SAM's default 0.05).

    Cost: per step one forward and T backward passes, then T more forward and backward
    passes at the perturbed points, each on the samples labelled for its task (the whole
    batch when one source labels every task). Regime: every task in every step.
    """
    perturbs = True

    def __init__(self, num_tasks, weighting=None, rho=0.05):
        super().__init__(num_tasks)
        cfg = dict(weighting or dict(type='EW'))
        if cfg.get('type') == 'FMTL':
            raise ValueError('FMTL cannot combine with FMTL')
        self.rho = float(rho)
        self.loss_part = WEIGHTINGS.build(cfg, default_args=dict(num_tasks=num_tasks))
        self.flat_part = WEIGHTINGS.build(cfg, default_args=dict(num_tasks=num_tasks))

    def combine(self, grads, losses):
        return self.loss_part.combine(grads, losses)

    def combine_flat(self, grads, sam_grads, losses):
        """grads, sam_grads: [T, P] at the point and at each task's perturbed point -> [P]."""
        return self.combine(grads, losses) + self.flat_part.combine(sam_grads - grads, losses)

    def state_dict(self):
        return dict(loss_part=self.loss_part.state_dict(), flat_part=self.flat_part.state_dict())

    def load_state_dict(self, state):
        self.loss_part.load_state_dict(state['loss_part'])
        self.flat_part.load_state_dict(state['flat_part'])
