# MULTI-LANE on PASCAL VOC 2007, B10-C2: 10 classes, then 5 tasks of 2 (alphabetical); the
# B0-C4 settings otherwise.
_base_ = ['./multilane_vit-b16_voc-b0c4.py']
from modzoo.datasets.class_incremental import split_classes  # noqa: E402

class_split = dict(base=10, increment=2)
class_mask = split_classes(_base_.voc_classes, **class_split)
model = dict(backbone=dict(num_tasks=len(class_mask)), head=dict(class_mask=class_mask))
train_cfg = dict(class_split=class_split)
