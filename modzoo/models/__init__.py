from . import backbones, layers  # noqa: F401 (registers backbones and MoE layers)
from . import necks  # noqa: F401 (registers the necks)
from .multi_task_model import MultiTaskModel
from .multilane import MultiLane

__all__ = ['MultiTaskModel', 'MultiLane']
