"""What a backbone (and a neck) hands to the heads."""
from typing import NamedTuple, Optional

import torch


class Features(NamedTuple):
    """Backbone or neck output.

    maps:       tuple of feature maps, each [B, C_i, H_i, W_i], shallow to deep
    cls_token:  [B, C] class token of the last level (None for backbones without one)
    aux_losses: auxiliary losses of the module that made these features (keys start with
                ``loss_``); a neck reports only its own, not its input's
    """
    maps: tuple
    cls_token: Optional[torch.Tensor] = None
    aux_losses: Optional[dict] = None
