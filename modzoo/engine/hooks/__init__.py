from .expert_usage_hook import ExpertUsageHook
from .random_state_hook import RandomStateHook
from .sampled_task_hook import SampledTaskHook
from .visualization_hook import TaskVisualizationHook

__all__ = ['ExpertUsageHook', 'RandomStateHook', 'SampledTaskHook', 'TaskVisualizationHook']
