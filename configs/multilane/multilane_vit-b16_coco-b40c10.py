# MULTI-LANE on COCO 2014, B40-C10: 40 classes, then 4 tasks of 10 (alphabetical); the
# B0-C10 settings otherwise.
_base_ = ['./multilane_vit-b16_coco-b0c10.py']
from modzoo.datasets.class_incremental import split_classes  # noqa: E402

class_split = dict(base=40, increment=10)
class_mask = split_classes(_base_.coco_classes, **class_split)
model = dict(backbone=dict(num_tasks=len(class_mask)), head=dict(class_mask=class_mask))
train_cfg = dict(class_split=class_split)
