"""Dense prediction heads: one small conv decoder shared by every dense task.

Prediction happens on the padded canvas (as in InvPT): logits are upsampled to the padded
batch size, losses read the gt padded with its ignore value, and each sample gets its
``pred_*`` at its own ``pad_shape`` (where its gt lives); metrics skip the padded pixels
through the gt ignore values.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import nn

from modzoo.registry import MODELS
from modzoo.structures import Features, TaskDataSample
from .losses import (balanced_bce_loss, balanced_cross_entropy, depth_l1_loss, normal_l1_loss,
                     seg_cross_entropy, stack_gt)


def sample_canvas(sample: TaskDataSample) -> Tuple[int, int]:
    """(H, W) of the sample's padded image: ``pad_shape``, else ``img_shape``."""
    shape = sample.metainfo.get('pad_shape', sample.metainfo.get('img_shape'))
    if shape is None:
        raise KeyError(f"dense heads need 'pad_shape' or 'img_shape' in the metainfo of "
                       f"{sample.metainfo.get('img_path', 'every data sample')}.")
    return tuple(shape[:2])


def batch_canvas(data_samples: List[TaskDataSample]) -> Tuple[int, int]:
    """(H, W) of the padded input batch: ``batch_input_shape`` when the data preprocessor set
    it (mmdet/mmseg convention), else the largest sample canvas."""
    shape = data_samples[0].metainfo.get('batch_input_shape')
    if shape is not None:
        return tuple(shape)
    sizes = [sample_canvas(sample) for sample in data_samples]
    return max(h for h, _ in sizes), max(w for _, w in sizes)


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of x [B, C, h, w] to [B, C, *size] (x itself when already that size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=False)


class DenseHead(BaseModule):
    """The shared decoder; subclasses set the task (output channels, gt field, loss, activation).

    ``feats.maps[i]`` [B, C_i, h_i, w_i] for i in ``in_index`` → 1×1 ConvModule to
    ``channels`` each → bilinear to the largest h_i × w_i → sum → ``num_convs`` × 3×3
    ConvModule (norm + act) → 1×1 conv to ``out_channels`` → bilinear to the padded input
    size [H, W].

    With ``unpatchify=p`` the decoder is Mod-Squad's instead: one linear layer per token of
    the single ``in_index`` map (a 1×1 conv to ``out_channels`` · p² values) whose outputs
    pixel-shuffle into the token's p × p pixels [B, out_channels, p h, p w] (then bilinear
    to [H, W] if that differs).

    Args:
        in_channels: channels of the selected maps (one int for all, or one per ``in_index``).
        out_channels: output channels (set by the subclass).
        gt_key: the gt field supervised (``pred_key`` is its ``pred_`` twin).
        channels: decoder width.
        in_index: which ``feats.maps`` to decode (negative counts from the end).
        num_convs: number of 3×3 ConvModules.
        norm_cfg, act_cfg: of the ConvModules (e.g. ``dict(type='SyncBN')`` for DDP).
        unpatchify: None, or the patch size p of the per-token linear decoder (then
            ``channels``, ``num_convs``, ``norm_cfg`` and ``act_cfg`` are unused).
        init_cfg: weight init.
    """

    def __init__(self,
                 in_channels: Union[int, Sequence[int]],
                 out_channels: int,
                 gt_key: str,
                 channels: int = 64,
                 in_index: Union[int, Sequence[int]] = -1,
                 num_convs: int = 1,
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 unpatchify: Optional[int] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.in_index = (in_index,) if isinstance(in_index, int) else tuple(in_index)
        if isinstance(in_channels, int):
            in_channels = (in_channels,) * len(self.in_index)
        if len(in_channels) != len(self.in_index):
            raise ValueError(f'{type(self).__name__}: in_channels {in_channels} needs one entry '
                             f'per in_index {self.in_index}.')
        self.gt_key = gt_key
        self.pred_key = 'pred_' + gt_key[len('gt_'):]
        self.unpatchify = unpatchify
        if unpatchify:
            if len(self.in_index) != 1:
                raise ValueError(f'{type(self).__name__}: unpatchify decodes one map; got '
                                 f'in_index {self.in_index}.')
            self.conv_out = nn.Conv2d(in_channels[0], out_channels * unpatchify ** 2, 1)
            return
        conv_cfg = dict(norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.projs = nn.ModuleList(ConvModule(c, channels, 1, **conv_cfg) for c in in_channels)
        self.convs = nn.Sequential(*(ConvModule(channels, channels, 3, padding=1, **conv_cfg)
                                     for _ in range(num_convs)))
        self.conv_out = nn.Conv2d(channels, out_channels, 1)

    def forward(self, feats: Features, size: Sequence[int]) -> torch.Tensor:
        """Logits [B, out_channels, *size] from the ``in_index`` maps of ``feats``."""
        try:
            maps = [feats.maps[i] for i in self.in_index]
        except IndexError:
            raise IndexError(f'{type(self).__name__}: in_index {self.in_index} is out of range '
                             f'for {len(feats.maps)} feature maps.') from None
        if self.unpatchify:
            return _resize(F.pixel_shuffle(self.conv_out(maps[0]), self.unpatchify), size)
        finest = max((m.shape[-2:] for m in maps), key=lambda hw: hw[0] * hw[1])
        x = sum(_resize(proj(m), finest) for proj, m in zip(self.projs, maps))
        return _resize(self.conv_out(self.convs(x)), size)

    def loss(self, feats: Features, data_samples: List[TaskDataSample]) -> dict:
        """``loss``: the task loss of the logits at the padded batch size."""
        size = batch_canvas(data_samples)
        logits = self(feats, size).float()  # the loss in fp32 under autocast
        gt = stack_gt(data_samples, self.gt_key, type(self).__name__, size)
        return dict(loss=self.loss_by_feat(logits, gt.to(logits.device)))

    def predict(self, feats: Features,
                data_samples: List[TaskDataSample]) -> List[TaskDataSample]:
        """Writes ``pred_key`` [..., H, W] (at each sample's ``pad_shape``) into every sample."""
        preds = self.postprocess(self(feats, batch_canvas(data_samples)).float())
        for sample, pred in zip(data_samples, preds):
            h, w = sample_canvas(sample)
            setattr(sample, self.pred_key, pred[..., :h, :w])
        return data_samples

    def loss_by_feat(self, logits: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """Scalar loss of logits [B, out_channels, H, W] against the stacked gt [B, ..., H, W]."""
        raise NotImplementedError

    def postprocess(self, logits: torch.Tensor) -> torch.Tensor:
        """The prediction [B, ..., H, W] from logits [B, out_channels, H, W]."""
        raise NotImplementedError


@MODELS.register_module()
class SemSegHead(DenseHead):
    """Semantic segmentation (or human parts with ``gt_key='gt_parts'``): CE over the pixels
    whose gt is not 255; predicts the argmax class [H, W]."""

    def __init__(self, num_classes: int, gt_key: str = 'gt_sem_seg', **kwargs):
        if gt_key not in ('gt_sem_seg', 'gt_parts'):
            raise ValueError(f"SemSegHead: gt_key must be 'gt_sem_seg' or 'gt_parts', got "
                             f'{gt_key!r}.')
        super().__init__(out_channels=num_classes, gt_key=gt_key, **kwargs)
        self.num_classes = num_classes

    def loss_by_feat(self, logits, gt):
        return seg_cross_entropy(logits, gt)

    def postprocess(self, logits):
        return logits.argmax(1)


@MODELS.register_module()
class DepthHead(DenseHead):
    """Depth in metres: L1 on the pixels with gt > 0; predicts the depth clamped to >= 0.

    ``init_depth`` starts the output bias at a depth of the data (its median minimises the
    L1 loss): the L1 gradient has a fixed size, so from 0 a short schedule spends most of
    its steps just reaching the data's scale.
    """

    def __init__(self, init_depth: float = 0., **kwargs):
        super().__init__(out_channels=1, gt_key='gt_depth', **kwargs)
        nn.init.constant_(self.conv_out.bias, init_depth)

    def loss_by_feat(self, logits, gt):
        return depth_l1_loss(logits[:, 0], gt)

    def postprocess(self, logits):
        return logits[:, 0].clamp(min=0)


@MODELS.register_module()
class NormalHead(DenseHead):
    """Surface normals: L1 between the L2-normalised prediction and the gt on pixels whose gt
    is not the 0-vector; predicts unit normals [3, H, W]."""

    def __init__(self, **kwargs):
        super().__init__(out_channels=3, gt_key='gt_normal', **kwargs)

    def loss_by_feat(self, logits, gt):
        return normal_l1_loss(logits, gt)

    def postprocess(self, logits):
        return F.normalize(logits, dim=1)


@MODELS.register_module()
class EdgeHead(DenseHead):
    """Boundaries: InvPT's balanced BCE (``pos_weight`` = edge_w = 0.95), 255 ignored;
    predicts the edge probability [H, W]."""

    def __init__(self, pos_weight: float = 0.95, **kwargs):
        if not 0 < pos_weight < 1:
            raise ValueError(f'EdgeHead: pos_weight must be in (0, 1), got {pos_weight}.')
        super().__init__(out_channels=1, gt_key='gt_edge', **kwargs)
        self.pos_weight = pos_weight

    def loss_by_feat(self, logits, gt):
        return balanced_bce_loss(logits[:, 0], gt, self.pos_weight)

    def postprocess(self, logits):
        return logits[:, 0].sigmoid()


@MODELS.register_module()
class SaliencyHead(DenseHead):
    """Saliency as InvPT: 2-way softmax with the class-balanced CE, 255 ignored; predicts the
    foreground probability [H, W]."""

    def __init__(self, **kwargs):
        super().__init__(out_channels=2, gt_key='gt_saliency', **kwargs)

    def loss_by_feat(self, logits, gt):
        return balanced_cross_entropy(logits, gt)

    def postprocess(self, logits):
        return logits.softmax(1)[:, 1]
