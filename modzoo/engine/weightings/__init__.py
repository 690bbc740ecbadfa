"""Multi-task loss weightings and gradient combinations (registry ``WEIGHTINGS``)."""
from .base import Weighting
from .conflict import CAGrad, GradVac, PCGrad
from .flat import FMTL
from .gradient_balancing import DBMTL, GradNorm
from .loss_based import DWA, EW, FAMO, GLS, IMTLL, RLW, UW
from .multi_objective import IMTL, IMTLG, MGDA, MGDAUB, AlignedMTL, NashMTL

__all__ = [
    'Weighting', 'EW', 'UW', 'DWA', 'RLW', 'GLS', 'FAMO', 'IMTLL', 'GradNorm', 'DBMTL', 'MGDA',
    'MGDAUB', 'PCGrad', 'GradVac', 'CAGrad', 'IMTLG', 'IMTL', 'NashMTL', 'AlignedMTL', 'FMTL'
]
