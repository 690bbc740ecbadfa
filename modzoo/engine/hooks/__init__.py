from .expert_usage_hook import ExpertUsageHook
from .random_state_hook import RandomStateHook

__all__ = ['ExpertUsageHook', 'RandomStateHook']
