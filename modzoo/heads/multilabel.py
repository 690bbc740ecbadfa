"""Multi-label classification head: a linear layer with one sigmoid per class."""
from typing import List, Optional

import torch.nn.functional as F

from modzoo.registry import MODELS
from modzoo.structures import Features, TaskDataSample
from .classification import ClsHead
from .losses import asymmetric_loss, stack_gt


@MODELS.register_module()
class MultiLabelClsHead(ClsHead):
    """Linear layer on the class token (or pooled last map) with per-class sigmoids.

    Args:
        num_classes: number of classes C.
        in_channels: feature width D.
        asymmetric: None for BCE-with-logits; a dict of :func:`asymmetric_loss` arguments
            (``gamma_pos``, ``gamma_neg``, ``clip``; ``{}`` for its defaults) for ASL.
        init_cfg: weight init.
    """
    gt_key = 'gt_labels'

    def __init__(self, num_classes: int, in_channels: int, asymmetric: Optional[dict] = None,
                 init_cfg: Optional[dict] = dict(type='Normal', layer='Linear', std=0.01)):
        super().__init__(num_classes, in_channels, init_cfg=init_cfg)
        unknown = set(asymmetric or {}) - {'gamma_pos', 'gamma_neg', 'clip'}
        if unknown:
            raise ValueError(f'MultiLabelClsHead: asymmetric takes gamma_pos, gamma_neg and '
                             f'clip; got unknown keys {sorted(unknown)}.')
        self.asymmetric = asymmetric

    def loss(self, feats: Features, data_samples: List[TaskDataSample]) -> dict:
        """``loss``: BCE-with-logits (or ASL) averaged over the B * C entries."""
        logits = self(feats).float()  # the loss in fp32 under autocast
        target = stack_gt(data_samples, self.gt_key, type(self).__name__).to(logits)
        if self.asymmetric is None:
            return dict(loss=F.binary_cross_entropy_with_logits(logits, target))
        return dict(loss=asymmetric_loss(logits, target, **self.asymmetric))

    def predict(self, feats: Features,
                data_samples: List[TaskDataSample]) -> List[TaskDataSample]:
        """Writes ``pred_scores`` (sigmoid [C]) into every sample."""
        for sample, scores in zip(data_samples, self(feats).float().sigmoid()):
            sample.pred_scores = scores
        return data_samples
