"""MULTI-LANE: multi-label class-incremental learning with one summarised-token pathway per task.

Training on task t runs only pathway t (a fresh optimizer per task leaves the other slices
untouched); inference runs pathways 0..t batched in one forward and sums their masked logits.
Inputs are float images [B, 3, H, W] in [0, 1]: the official code does not normalise them.
"""
from mmengine.model import BaseModel

from modzoo.registry import MODELS
from .backbones.vit import ViT


@MODELS.register_module()
class MultiLane(BaseModel):
    """``MultiLaneViT`` backbone + ``PathwayHead``.

    Args:
        backbone: config of a ``MultiLaneViT``.
        head: config of a ``PathwayHead``; its ``in_channels`` defaults to the ViT width.
        pretrained: a checkpoint whose ``backbone.`` keys are timm ViT weights (a modzoo
            model with a ``ViT`` backbone), loaded into the frozen ViT at build time; for
            timm's own weights use ``backbone.pretrained=True`` instead.
        data_preprocessor, init_cfg: as for mmengine's ``BaseModel``.
    """

    def __init__(self, backbone, head, pretrained=None, data_preprocessor=None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        if pretrained is not None:
            # the frozen ViT is a timm VisionTransformer, as ViT is: use ViT's loader
            ViT.load_timm_checkpoint(self.backbone.vit, pretrained, prefix='backbone.')
        self.head = MODELS.build({'in_channels': self.backbone.vit.embed_dim, **head})
        head_tasks = self.head.class_mask.shape[0]
        if head_tasks != self.backbone.num_tasks:
            raise ValueError(f"MultiLane: head.class_mask lists {head_tasks} tasks but "
                             f'backbone.num_tasks={self.backbone.num_tasks}')

    @property
    def task_id(self):
        """Index of the task being learnt; pathways 0..task_id are in use."""
        return int(self.backbone.task_id)

    def next_task(self):
        """Move to the next task; its pathway starts from the current one's parameters."""
        self.backbone.next_task()

    def params_per_task(self):
        """Trainable parameters each task adds (selectors, prompts, identifier key)."""
        return self.backbone.params_per_task() + self.head.params_per_task()

    def forward_pathways(self, x, tasks=None):
        """x [B, 3, H, W] -> CLS of each pathway in ``tasks`` (default 0..task_id) after the
        final frozen norm, [B, T, D]."""
        return self.backbone.forward_tokens(x, tasks)[1]

    def forward(self, inputs, data_samples=None, mode='tensor'):
        """inputs [B, 3, H, W]; mode 'tensor' -> logits [B, C] of pathways 0..task_id,
        'loss' -> losses of the current task's pathway, 'predict' -> samples with
        ``pred_scores``."""
        if mode == 'loss':
            tasks = [self.task_id]
            return self.head.loss(self.backbone(inputs, tasks), data_samples, tasks)
        tasks = self.backbone.task_list()
        feats = self.backbone(inputs, tasks)
        if mode == 'predict':
            return self.head.predict(feats, data_samples, tasks)
        if mode == 'tensor':
            return self.head(feats, tasks)
        raise ValueError(f"MultiLane: mode='{mode}', expected 'loss', 'predict' or 'tensor'")
