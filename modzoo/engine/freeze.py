"""Freeze parameters by name for fine-tuning, and say how many are left to train.

One mechanism for every fine-tuning recipe: the optim-wrapper constructor freezes, then builds
the optimizer over what still trains::

    optim_wrapper = dict(
        constructor='FreezeOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
        paramwise_cfg=dict(frozen=['backbone.*'], trainable=['backbone.*.bias']))  # bias tuning

Patterns are shell-style (``fnmatch``: ``*`` also matches dots) and matched against the whole
parameter name, e.g. ``backbone.blocks.11.*``, ``*.bias``, ``heads.normals.*``. A parameter is
frozen (``requires_grad=False``) when it matches a ``frozen`` pattern and no ``trainable`` one;
``frozen`` defaults to everything when only ``trainable`` is given. Parameters are never
unfrozen: a module that freezes its own weights (e.g. ``MultiLaneViT``) stays frozen.

The constructor runs when ``runner.train()`` builds the optimizer, after the model was wrapped
for distributed training: keep ``find_unused_parameters=True`` (the default runtime sets it) so
DDP accepts the frozen parameters.
"""
import fnmatch
import logging
from collections import defaultdict
from typing import Optional, Sequence, Tuple

from mmengine.logging import MMLogger, print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

from modzoo.registry import OPTIM_WRAPPER_CONSTRUCTORS


def freeze(model: nn.Module, frozen: Optional[Sequence[str]] = None,
           trainable: Optional[Sequence[str]] = None) -> None:
    """Set ``requires_grad=False`` on the parameters of ``model`` that match a ``frozen``
    pattern (default: all when ``trainable`` is given, else none) and no ``trainable`` one.

    Raises:
        ValueError: a pattern matches no parameter (the message shows some names).
    """
    trainable = list(trainable or [])
    frozen = list(frozen) if frozen is not None else (['*'] if trainable else [])
    names = [name for name, _ in model.named_parameters()]
    for pattern in frozen + trainable:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            raise ValueError(f"freeze pattern '{pattern}' matches no parameter of "
                             f'{type(model).__name__}; its names look like '
                             f'{", ".join(names[:3])} ... {", ".join(names[-2:])}')
    for name, param in model.named_parameters():
        if _matches(name, frozen) and not _matches(name, trainable):
            param.requires_grad_(False)


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def parameter_counts(model: nn.Module) -> Tuple[int, int]:
    """(trainable, total) numbers of parameter elements of ``model``."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def log_parameter_counts(model: nn.Module) -> None:
    """Log trainable / total parameters of ``model`` and of each of its top-level modules."""
    trainable, total = parameter_counts(model)
    by_module = defaultdict(lambda: [0, 0])
    for name, param in model.named_parameters():
        counts = by_module[name.split('.')[0]]
        counts[0] += param.numel() if param.requires_grad else 0
        counts[1] += param.numel()
    parts = ', '.join(f'{module} {t:,}/{n:,}' for module, (t, n) in by_module.items())
    print_log(f'trainable parameters: {trainable:,} of {total:,} '
              f'({100 * trainable / max(total, 1):.2f}%); by module: {parts}', logger='current')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class FreezeOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's ``DefaultOptimWrapperConstructor`` that first freezes parameters by name
    (:func:`freeze`) and logs the trainable and total parameter counts.

    ``paramwise_cfg`` takes, besides mmengine's keys (``custom_keys``, ``norm_decay_mult``,
    ...), ``frozen`` and ``trainable``: lists of name patterns (see the module docstring).
    With a ``paramwise_cfg``, mmengine leaves the frozen parameters out of the optimizer.
    """

    def __call__(self, model: nn.Module):
        module = model.module if is_model_wrapper(model) else model
        freeze(module, self.paramwise_cfg.get('frozen'), self.paramwise_cfg.get('trainable'))
        log_parameter_counts(module)
        logger, quiet = MMLogger.get_current_instance(), _QuietFrozenWarnings()
        logger.addFilter(quiet)
        try:
            return super().__call__(model)
        finally:
            logger.removeFilter(quiet)


class _QuietFrozenWarnings(logging.Filter):
    """Drops mmengine's warning for each frozen parameter it leaves out of the optimizer (the
    counts above say it once)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return 'since its requires_grad=False' not in record.getMessage()
