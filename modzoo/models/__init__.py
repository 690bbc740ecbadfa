from . import backbones  # noqa: F401 (registers the backbones)
from .multi_task_model import MultiTaskModel

__all__ = ['MultiTaskModel']
