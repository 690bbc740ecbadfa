"""Building blocks of backbones: mixture-of-experts routing, dispatch and layers; MULTI-LANE
selectors and prefix prompts; task bias sets."""
from .bias_sets import BiasSetLayerNorm, BiasSetLinear, bias_set_parameters
from .mixture_of_attention import MixtureOfAttentionHeads
from .moe_dispatch import DispatchPlan, combine, dispatch, grouped_linear, plan_dispatch
from .moe_losses import MoEAuxLoss, MutualInformationLoss, sum_aux_losses
from .moe_mlp import MoEMlp
from .moe_router import Routing, TaskRouter
from .prefix_prompts import PrefixPrompts, prefix_attention
from .summarizer import PatchSelectors, summarize
from .visual_prompts import VisualPrompts

__all__ = [
    'BiasSetLayerNorm', 'BiasSetLinear', 'bias_set_parameters',
    'DispatchPlan', 'MixtureOfAttentionHeads', 'MoEAuxLoss', 'MoEMlp', 'MutualInformationLoss',
    'Routing', 'TaskRouter', 'combine', 'dispatch', 'grouped_linear', 'plan_dispatch',
    'sum_aux_losses', 'PrefixPrompts', 'prefix_attention', 'PatchSelectors', 'summarize',
    'VisualPrompts'
]
