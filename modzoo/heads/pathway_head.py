"""MULTI-LANE head: one shared linear classifier over L2-normalised pathway CLS tokens.

``mode='concat'`` (the method): every pathway is classified, pathway j's logits are kept only
for the classes of task j and the kept logits are summed, so each class is scored by its own
task's pathway and no task identity is predicted (``forward_head`` in ``tdemin16/multi-lane``).

``mode='task'`` (the paper's "no parallel pathways" ablation): a task identifier with one
orthogonally initialised key per task picks, for each image, the pathway whose key is most
cosine-similar to the frozen CLS token; its logits score every class. Training adds
``loss_identifier`` = -mean cos(frozen CLS, key of the trained task).
"""
import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn

from modzoo.registry import MODELS
from .losses import stack_gt


@MODELS.register_module()
class PathwayHead(nn.Module):
    """Shared linear head over MULTI-LANE pathways (multi-label classification).

    Args:
        num_classes: C, classes over all tasks.
        in_channels: D, width of the CLS tokens.
        class_mask: list (one entry per task) of the class indices of that task.
        mode: ``'concat'`` or ``'task'`` (see the module docstring).
        normalize: L2-normalise each CLS token before the linear layer (official
            ``--normalize pre-head``).

    Features in: ``cls_token`` [B, 1+T, D], the frozen CLS then the CLS of the T pathways
    ``tasks`` (the layout of ``MultiLaneViT``).
    """

    def __init__(self, num_classes, in_channels, class_mask, mode='concat', normalize=True):
        super().__init__()
        if mode not in ('concat', 'task'):
            raise ValueError(f"PathwayHead: mode='{mode}', expected 'concat' or 'task'")
        bad = sorted({c for task in class_mask for c in task if not 0 <= c < num_classes})
        if bad:
            raise ValueError(f'PathwayHead: class_mask holds classes {bad}, expected indices '
                             f'in 0..{num_classes - 1}')
        self.mode = mode
        self.normalize = normalize
        self.fc = nn.Linear(in_channels, num_classes)
        trunc_normal_(self.fc.weight, std=.02)
        nn.init.zeros_(self.fc.bias)
        mask = torch.zeros(len(class_mask), num_classes)
        for task, classes in enumerate(class_mask):
            mask[task, classes] = 1.
        self.register_buffer('class_mask', mask, persistent=False)  # [num_tasks, C]
        if mode == 'task':
            self.keys = nn.Parameter(nn.init.orthogonal_(torch.empty(len(class_mask),
                                                                     in_channels)))

    def params_per_task(self):
        """Trainable parameters one task adds to the head (its identifier key)."""
        return self.keys[0].numel() if self.mode == 'task' else 0

    def identify(self, frozen_cls, tasks):
        """Pick a pathway per image: frozen_cls [B, D] -> (index into tasks [B], cosine [B])."""
        keys = F.normalize(self.keys[tasks], dim=-1)                      # [T, D]
        cos, choice = (F.normalize(frozen_cls, dim=-1) @ keys.T).max(dim=-1)
        return choice, cos

    def forward(self, feats, tasks):
        """feats.cls_token [B, 1+T, D], tasks: the T pathway indices -> logits [B, C].

        As the official model's output: in ``'concat'`` mode the logits of classes outside
        the tasks are 0; in ``'task'`` mode the chosen pathway scores every class.
        """
        frozen_cls, pathways = feats.cls_token[:, 0], feats.cls_token[:, 1:]
        if self.normalize:
            pathways = F.normalize(pathways, dim=-1)
        if self.mode == 'concat':
            return (self.fc(pathways) * self.class_mask[tasks]).sum(dim=1)
        choice = self.identify(frozen_cls, tasks)[0]
        return self.fc(pathways[torch.arange(len(choice)), choice])

    def seen_classes(self, tasks):
        """[C] 1 for the classes of ``tasks``, else 0 (the official ``mask_logits``)."""
        return self.class_mask[tasks].amax(dim=0)

    def loss(self, feats, data_samples, tasks):
        """Binary cross-entropy over the classes of ``tasks`` (others: logit and target 0,
        so they give no gradient), mean over B*C as in the official code."""
        seen = self.seen_classes(tasks)
        logits = self(feats, tasks) * seen
        targets = stack_gt(data_samples, 'gt_labels', type(self).__name__).to(logits) * seen
        losses = dict(loss_cls=F.binary_cross_entropy_with_logits(logits, targets))
        if self.mode == 'task':
            losses['loss_identifier'] = -self.identify(feats.cls_token[:, 0], tasks)[1].mean()
        return losses

    def predict(self, feats, data_samples, tasks):
        """Set ``pred_scores`` [C] on each sample: sigmoid of the logits, with the logits of
        classes outside ``tasks`` set to 0 as in the official evaluation."""
        scores = (self(feats, tasks) * self.seen_classes(tasks)).sigmoid()
        for sample, score in zip(data_samples, scores):
            sample.pred_scores = score
        return data_samples
