from .taskexpert import MemorialMoE, TaskExpertNeck, TaskGate

__all__ = ['MemorialMoE', 'TaskExpertNeck', 'TaskGate']
