"""Multi-task loss weightings and gradient combinations (registry ``WEIGHTINGS``)."""
from .base import Weighting
from .conflict import CAGrad, GradVac, PCGrad
from .flat import FMTL
from .gradient_balancing import DBMTL, GradNorm
from .loss_based import DWA, EW, FAMO, GLS, RLW, UW
from .multi_objective import MGDA, IMTL, AlignedMTL, NashMTL

__all__ = [
    'Weighting', 'EW', 'UW', 'DWA', 'RLW', 'GLS', 'FAMO', 'GradNorm', 'DBMTL', 'MGDA', 'PCGrad',
    'GradVac', 'CAGrad', 'IMTL', 'NashMTL', 'AlignedMTL', 'FMTL'
]
