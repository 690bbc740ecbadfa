"""Plain Vision Transformer backbone: timm's ``VisionTransformer`` returning ``Features``.

The parameter names are timm's (``patch_embed.proj``, ``blocks.{i}.attn.qkv``, ``norm``, ...),
so any timm ViT state dict loads, and ``backbone.``-prefixed keys of a whole modzoo model
are exactly timm's keys behind that prefix.
"""
import logging
from typing import Optional, Sequence, Union

import torch
from einops import rearrange
from mmengine.logging import print_log
from mmengine.model import BaseModule
from timm.models import checkpoint
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn
from torch import nn

from modzoo.registry import MODELS
from modzoo.structures import Features
from modzoo.weights import load_weights
from ..layers.bias_sets import add_bias_sets, bias_set_index, keep_bias_set_index

# embed_dim / depth / num_heads of timm's vit_{tiny,small,base,large}_patch16_*.
ARCHS = {
    'tiny': dict(embed_dim=192, depth=12, num_heads=3),
    'small': dict(embed_dim=384, depth=12, num_heads=6),
    'base': dict(embed_dim=768, depth=12, num_heads=12),
    'large': dict(embed_dim=1024, depth=24, num_heads=16),
}
ARCH_KEYS = ('embed_dim', 'depth', 'num_heads', 'mlp_ratio')


def _arch_settings(arch: Union[str, dict]) -> dict:
    """The timm size arguments of a preset name or of a dict with ``ARCH_KEYS``."""
    if isinstance(arch, str):
        if arch not in ARCHS:
            raise ValueError(f"ViT arch '{arch}' is not one of {sorted(ARCHS)} (or a dict).")
        return dict(ARCHS[arch])
    missing = {'embed_dim', 'depth', 'num_heads'} - set(arch)
    unknown = set(arch) - set(ARCH_KEYS)
    if missing or unknown:
        raise ValueError(f'ViT arch dict {arch} must have keys embed_dim, depth, num_heads '
                         f'(optional mlp_ratio); missing {sorted(missing)}, '
                         f'unknown {sorted(unknown)}.')
    return dict(arch)


@MODELS.register_module()
class ViT(VisionTransformer, BaseModule):
    """ViT whose ``forward(x, task)`` returns multi-level NCHW maps and the class token.

    Any input whose sides are multiples of ``patch_size`` is accepted: the position
    embedding (stored at ``img_size``) is resampled on the fly (timm ``dynamic_img_size``).

    Args:
        arch: 'tiny' | 'small' | 'base' | 'large', or dict(embed_dim, depth, num_heads[,
            mlp_ratio]).
        img_size: size the position embedding is stored (and pretrained weights resampled) at.
        patch_size: patch side p; maps have stride p.
        in_channels: input image channels.
        out_indices: blocks whose outputs become ``Features.maps`` (negative counts from the
            end), returned shallow to deep.
        final_norm: apply the final LayerNorm to the last block's map (when it is an output).
            The class token is always taken after the final LayerNorm.
        global_pool: the image-level feature ``Features.cls_token``: 'token' (the class token
            after the final LayerNorm; None without one) or 'avg' (the mean of the last
            block's patch tokens, then its own LayerNorm ``fc_norm``: timm's
            ``global_pool='avg'``, the MAE and Mod-Squad classification path; the maps keep
            the final ``norm``).
        drop_path_rate: stochastic depth rate of the last block (linear decay rule).
        qkv_bias: bias in the qkv projections.
        with_cls_token: prepend a class token (``Features.cls_token`` is None without it).
        n_bias_sets: task-specific bias sets (Chameleon / VTM bias tuning): with n > 0 the
            biases of every block's Linear and LayerNorm layers (qkv, proj, fc1, fc2, norm1,
            norm2) are tables [n, dim] and ``forward(x, task)`` takes ``task`` [B], the row of
            each sample. A plain timm checkpoint fills every row.
        pretrained: a timm ViT checkpoint (a path, URL, ``hf://``, ``timm:`` or zoo name;
            .pth/.safetensors); shorthand for
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``.
        init_cfg: None or dict(type='Pretrained', checkpoint=PATH[, prefix='backbone.']).
            The checkpoint is loaded by ``init_weights()`` (the Runner calls it).
    """

    def __init__(self,
                 arch: Union[str, dict] = 'base',
                 img_size: Union[int, Sequence[int]] = 224,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 final_norm: bool = True,
                 drop_path_rate: float = 0.,
                 qkv_bias: bool = True,
                 with_cls_token: bool = True,
                 global_pool: str = 'token',
                 n_bias_sets: int = 0,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None):
        if global_pool not in ('token', 'avg'):
            raise ValueError(f"ViT global_pool must be 'token' or 'avg', got {global_pool!r}.")
        # BaseModule sets init_cfg = None before timm's __init__ calls init_weights(), so
        # construction always gives timm's random init.
        super().__init__(
            img_size=img_size, patch_size=patch_size, in_chans=in_channels, num_classes=0,
            global_pool='', class_token=with_cls_token, qkv_bias=qkv_bias,
            drop_path_rate=drop_path_rate, dynamic_img_size=True, **_arch_settings(arch))
        depth = len(self.blocks)
        indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
        bad = [i for i in indices if not -depth <= i < depth]
        if bad or not indices:
            raise ValueError(f'ViT out_indices {out_indices} must be non-empty block indices in '
                             f'[-{depth}, {depth - 1}] for depth {depth}.')
        self.out_indices = tuple(sorted({i % depth for i in indices}))
        self.norm_last_map = final_norm and self.out_indices[-1] == depth - 1
        self.global_pool = global_pool
        if global_pool == 'avg':  # (timm's 'avg' would drop ``norm``, which the maps keep)
            self.fc_norm = nn.LayerNorm(self.embed_dim, eps=1e-6)  # timm's norm layer
        self.n_bias_sets = n_bias_sets
        if n_bias_sets:
            add_bias_sets(self.blocks, n_bias_sets)

        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError('ViT takes either pretrained or init_cfg, not both; '
                                 f'got pretrained={pretrained!r}, init_cfg={init_cfg}.')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        if init_cfg is not None and (not isinstance(init_cfg, dict)
                                     or init_cfg.get('type') != 'Pretrained'
                                     or 'checkpoint' not in init_cfg):
            raise ValueError(f'ViT init_cfg must be None or dict(type=\'Pretrained\', '
                             f'checkpoint=PATH[, prefix=...]); got {init_cfg}.')
        self.init_cfg = init_cfg

    def init_weights(self, mode: str = '', needs_reset: bool = True) -> None:
        """timm's random init, or load the ``init_cfg`` checkpoint when one is configured."""
        if self.init_cfg is None:
            super().init_weights(mode, needs_reset)
            return
        self.load_timm_checkpoint(self.init_cfg['checkpoint'], self.init_cfg.get('prefix'))
        self._is_init = True

    def load_timm_checkpoint(self, path: str, prefix: Optional[str] = None) -> None:
        """Load a timm ViT checkpoint (any source of :func:`modzoo.weights.load_weights`;
        optionally the keys behind ``prefix``) through timm's ``checkpoint_filter_fn``: the
        position embedding is resampled to ``img_size`` and the patch embedding to
        ``patch_size``. Classifier keys (``head.*``) are dropped; other unexpected keys are
        logged; missing or wrongly shaped keys raise ``CheckpointMismatchError``, except
        ``fc_norm`` (a class-token checkpoint for ``global_pool='avg'``), which keeps its
        initial values."""
        def convert(state_dict: dict) -> dict:
            state_dict = {k: v for k, v in checkpoint_filter_fn(state_dict, self).items()
                          if not k.startswith('head.')}
            own = self.state_dict()
            fresh = [k for k in own if k.startswith('fc_norm.') and k not in state_dict]
            if fresh:
                print_log(f"ViT pretrained checkpoint '{path}' has no {fresh}: they keep their "
                          'initial values', logger='current', level=logging.WARNING)
            return {**state_dict, **{k: own[k] for k in fresh}}

        load_weights(self, path, prefix=prefix, convert=convert, allow_unexpected=True)
        print_log(f"ViT loaded pretrained weights from '{path}'", logger='current')

    @property
    def img_size(self) -> tuple:
        """(H, W) the position embedding is stored at."""
        return self.patch_embed.img_size

    @property
    def grid_size(self) -> tuple:
        """(H/p, W/p) of ``img_size``."""
        return self.patch_embed.grid_size

    def forward(self, x: torch.Tensor, task=None) -> Features:
        """x [B, C_in, H, W], H and W multiples of p; ``task``: with bias sets, the bias-set
        row of each sample, a long tensor [B] (unused otherwise).

        Returns Features(maps=tuple of [B, D, H/p, W/p] per out index, cls_token=[B, D] (the
        ``global_pool`` feature) or None, aux_losses=None). The maps are views of the token
        tensors (no copies).
        """
        with bias_set_index(self._bias_set_rows(task, x.shape[0])):
            return self._forward_features(x)

    def _bias_set_rows(self, task, batch: int) -> Optional[torch.Tensor]:
        """The bias-set index [B] of a pass (None without bias sets), checked."""
        if not self.n_bias_sets:
            return None
        if not (torch.is_tensor(task) and task.shape == (batch,) and not task.is_floating_point()
                and 0 <= int(task.min()) and int(task.max()) < self.n_bias_sets):
            raise ValueError(f'{type(self).__name__} with {self.n_bias_sets} bias sets needs '
                             f'task = a long tensor [{batch}] of rows in [0, '
                             f'{self.n_bias_sets - 1}], got {task!r}')
        return task

    def _forward_features(self, x: torch.Tensor) -> Features:
        x = self.patch_embed(x)                                    # [B, h, w, D]
        h = x.shape[1]
        x = self.norm_pre(self.patch_drop(self._pos_embed(x)))     # [B, T + h * w, D]
        levels = []
        for i in range(len(self.blocks)):
            x = self._run_block(i, x)
            if i in self.out_indices:
                levels.append(x)
        if self.norm_last_map:
            levels[-1] = self.norm(x)
        if self.global_pool == 'avg':
            cls_token = self.fc_norm(x[:, self.num_prefix_tokens:].mean(1))
        elif not self.has_class_token:
            cls_token = None
        else:
            cls_token = levels[-1][:, 0] if self.norm_last_map else self.norm(x[:, 0])
        maps = tuple(rearrange(t[:, self.num_prefix_tokens:], 'b (h w) d -> b d h w', h=h)
                     for t in levels)
        return Features(maps=maps, cls_token=cls_token)

    def _run_block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Block i on the tokens x [B, T + h * w, D] (prompt-tuning subclasses extend it)."""
        block = self.blocks[i]
        return checkpoint(keep_bias_set_index(block), x) if self.grad_checkpointing else block(x)
