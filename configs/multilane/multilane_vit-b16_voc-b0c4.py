# MULTI-LANE on PASCAL VOC 2007, B0-C4 (5 tasks of 4 classes, alphabetical), with the
# official hyper-parameters (tdemin16/multi-lane configs/voc.py): S=10 selectors, P=10
# prompts in the first 5 blocks, Adam lr 0.05 * 256 / 256, batch 256, 30 epochs per task;
# trained on trainval, evaluated on test. 84,480 trainable parameters per task.
# Layout: data/VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main}.
#   python tools/train.py configs/multilane/multilane_vit-b16_voc-b0c4.py
_base_ = ['./multilane_vit-b16_coco-b0c10.py']
from modzoo.datasets import voc as voc_dataset  # noqa: E402
from modzoo.datasets.class_incremental import split_classes  # noqa: E402

voc_classes = voc_dataset.VOC_CLASSES
class_split = dict(base=0, increment=4)
class_mask = split_classes(voc_classes, **class_split)
batch_size = 256

model = dict(
    backbone=dict(num_tasks=len(class_mask), num_selectors=10, num_prompts=10),
    head=dict(num_classes=len(voc_classes), class_mask=class_mask))
voc = dict(_delete_=True, type='VOCDataset', data_root='data/VOCdevkit/VOC2007')
train_dataloader = dict(batch_size=batch_size, dataset=dict(sources=dict(multilabel=dict(
    dataset=dict(**voc, split='trainval', pipeline=_base_.train_pipeline)))))
val_dataloader = dict(dataset=dict(sources=dict(multilabel=dict(
    dataset=dict(**voc, split='test', pipeline=_base_.test_pipeline)))))
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr=0.05 * batch_size / 256))
train_cfg = dict(class_split=class_split)
