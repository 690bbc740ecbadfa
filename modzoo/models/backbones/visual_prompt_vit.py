"""ViT with VPT-deep visual prompts, for prompt tuning of a frozen pretrained backbone."""
from typing import Optional

import torch

from modzoo.models.layers.visual_prompts import VisualPrompts
from modzoo.registry import MODELS
from .vit import ViT


@MODELS.register_module()
class VisualPromptViT(ViT):
    """:class:`ViT` whose every block gets ``num_prompts`` learned tokens of its own
    (VPT-deep; :class:`VisualPrompts`, ``prompts.tokens`` [depth, P, D]). ``forward`` returns
    the same ``Features`` as ViT, without the prompt positions.

    Prompt tuning trains the prompts and the heads only: freeze the rest with
    ``optim_wrapper=dict(constructor='FreezeOptimWrapperConstructor',
    paramwise_cfg=dict(frozen=['backbone.*'], trainable=['backbone.prompts.*']))``.

    Args:
        num_prompts: P, prompt tokens per block (VPT uses 1 to 200; 10 or 50 typically).
        prompt_dropout: dropout on the prompt tokens.
        **kwargs: the arguments of :class:`ViT`. Its pretrained checkpoint (a timm ViT) has
            no prompts: they keep their initialisation.
    """

    def __init__(self, num_prompts: int = 10, prompt_dropout: float = 0., **kwargs):
        super().__init__(**kwargs)
        if num_prompts < 1:
            raise ValueError(f'VisualPromptViT needs num_prompts >= 1, got {num_prompts}')
        self.prompts = VisualPrompts(len(self.blocks), num_prompts, self.embed_dim,
                                     self.patch_embed.patch_size[0],
                                     self.patch_embed.proj.in_channels, prompt_dropout)

    def _run_block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Block i with its prompts on x [B, T + h * w, D] -> [B, T + h * w, D]."""
        x = self.prompts.insert(x, i, self.num_prefix_tokens)
        return self.prompts.remove(super()._run_block(i, x), self.num_prefix_tokens)

    def load_timm_checkpoint(self, path: str, prefix: Optional[str] = None) -> None:
        """:meth:`ViT.load_timm_checkpoint` into everything but the prompts, which a timm
        checkpoint does not have (they keep their initialisation)."""
        prompts = self.prompts
        del self.prompts
        try:
            super().load_timm_checkpoint(path, prefix)
        finally:
            self.prompts = prompts
