"""MULTI-LANE head: one shared linear classifier over L2-normalised pathway CLS tokens.

``mode='concat'`` (the method): every pathway is classified, pathway j's logits are kept only
for the classes of task j and the kept logits are summed, so each class is scored by its own
task's pathway and no task identity is predicted (``forward_head`` in ``tdemin16/multi-lane``).

``multi_label=False`` is the single-label class-incremental variant (CIFAR-100 / ImageNet-R
in the official code): cross-entropy over the trained task's classes, softmax over the
classes of the seen tasks, the other logits at -inf.

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
    """Shared linear head over MULTI-LANE pathways (multi-label or single-label).

    Args:
        num_classes: C, classes over all tasks.
        in_channels: D, width of the CLS tokens.
        class_mask: list (one entry per task) of the class indices of that task.
        mode: ``'concat'`` or ``'task'`` (see the module docstring).
        normalize: L2-normalise each CLS token before the linear layer (official
            ``--normalize pre-head``).
        multi_label: True: sigmoid / binary cross-entropy on ``gt_labels`` (multi-hot);
            False: softmax / cross-entropy on ``gt_label`` (one class).

    Features in: ``cls_token`` [B, 1+T, D], the frozen CLS then the CLS of the T pathways
    ``tasks`` (the layout of ``MultiLaneViT``).
    """

    def __init__(self, num_classes, in_channels, class_mask, mode='concat', normalize=True,
                 multi_label=True):
        super().__init__()
        if mode not in ('concat', 'task'):
            raise ValueError(f"PathwayHead: mode='{mode}', expected 'concat' or 'task'")
        bad = sorted({c for task in class_mask for c in task if not 0 <= c < num_classes})
        if bad:
            raise ValueError(f'PathwayHead: class_mask holds classes {bad}, expected indices '
                             f'in 0..{num_classes - 1}')
        self.mode = mode
        self.normalize = normalize
        self.multi_label = multi_label
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
        """Multi-label: binary cross-entropy over the classes of ``tasks`` (others: logit and
        target 0, so they give no gradient), mean over B*C as in the official code.
        Single-label: cross-entropy over the classes of ``tasks``. (``MultiLane`` trains
        with ``tasks`` = the current task only, as the official training mask.)"""
        logits = self.seen_logits(feats, tasks)
        if self.multi_label:
            targets = stack_gt(data_samples, 'gt_labels', type(self).__name__).to(logits)
            targets = targets * self.seen_classes(tasks)
            losses = dict(loss_cls=F.binary_cross_entropy_with_logits(logits, targets))
        else:
            labels = stack_gt(data_samples, 'gt_label', type(self).__name__).long().view(-1)
            losses = dict(loss_cls=F.cross_entropy(logits, labels))
        if self.mode == 'task':
            losses['loss_identifier'] = -self.identify(feats.cls_token[:, 0], tasks)[1].mean()
        return losses

    def seen_logits(self, feats, tasks):
        """Logits [B, C] with the classes outside ``tasks`` at 0 (multi-label, the official
        ``mask_logits``) or -inf (single-label)."""
        logits = self(feats, tasks).float()  # losses and scores in fp32 under autocast
        unseen = self.seen_classes(tasks) == 0
        return logits.masked_fill(unseen, 0. if self.multi_label else float('-inf'))

    def predict(self, feats, data_samples, tasks):
        """Multi-label: ``pred_scores`` [C], the sigmoid of :meth:`seen_logits` (unseen
        classes score 0.5, as in the official evaluation). Single-label: ``pred_score`` [C],
        their softmax (unseen classes 0), and ``pred_label``."""
        logits = self.seen_logits(feats, tasks)
        for sample, logit in zip(data_samples, logits):
            if self.multi_label:
                sample.pred_scores = logit.sigmoid()
            else:
                sample.pred_score = logit.softmax(dim=0)
                sample.pred_label = sample.pred_score.argmax()
        return data_samples
