from .simple_feature_pyramid import SimpleFeaturePyramid
from .taskexpert import MemorialMoE, TaskExpertNeck, TaskGate

__all__ = ['MemorialMoE', 'SimpleFeaturePyramid', 'TaskExpertNeck', 'TaskGate']
