"""Single-label classification head: a linear layer on the image-level feature."""
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import nn

from modzoo.registry import MODELS
from modzoo.structures import Features, TaskDataSample
from .losses import stack_gt


@MODELS.register_module()
class ClsHead(BaseModule):
    """Linear classifier on ``feats.cls_token`` [B, D] (the backbone's image-level feature:
    its class token, or its pooled tokens with ``global_pool='avg'``), or on the global
    average of the last map [B, D, h, w] when the backbone has none.

    Args:
        num_classes: number of classes C.
        in_channels: feature width D.
        label_smoothing: label smoothing of the cross-entropy.
        pre_norm: a LayerNorm before the linear layer (Mod-Squad's classification heads).
        init_cfg: weight init (mmpretrain's default: normal, std 0.01).
    """
    gt_key = 'gt_label'

    def __init__(self, num_classes: int, in_channels: int, label_smoothing: float = 0.,
                 pre_norm: bool = False,
                 init_cfg: Optional[dict] = dict(type='Normal', layer='Linear', std=0.01)):
        super().__init__(init_cfg=init_cfg)
        if not 0 <= label_smoothing < 1:
            raise ValueError(f'{type(self).__name__}: label_smoothing must be in [0, 1), got '
                             f'{label_smoothing}.')
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.norm = nn.LayerNorm(in_channels) if pre_norm else nn.Identity()
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, feats: Features) -> torch.Tensor:
        """Logits [B, C]."""
        x = feats.cls_token if feats.cls_token is not None else feats.maps[-1].mean((2, 3))
        return self.fc(self.norm(x))

    def loss(self, feats: Features, data_samples: List[TaskDataSample]) -> dict:
        """``loss``: cross-entropy; ``acc``: top-1 accuracy on the batch in percent (logged)."""
        logits = self(feats).float()  # the loss in fp32 under autocast
        target = stack_gt(data_samples, self.gt_key, type(self).__name__).to(logits.device)
        loss = F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)
        acc = (logits.detach().argmax(1) == target).float().mean() * 100
        return dict(loss=loss, acc=acc)

    def predict(self, feats: Features,
                data_samples: List[TaskDataSample]) -> List[TaskDataSample]:
        """Writes ``pred_score`` (softmax [C]) and ``pred_label`` ([]) into every sample."""
        scores = self(feats).float().softmax(1)
        for sample, score in zip(data_samples, scores):
            sample.pred_score = score
            sample.pred_label = score.argmax()
        return data_samples
