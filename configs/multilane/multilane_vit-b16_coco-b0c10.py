# MULTI-LANE on COCO 2014, B0-C10 (8 tasks of 10 classes, alphabetical), with the official
# hyper-parameters (tdemin16/multi-lane configs/coco.py): frozen ViT-B/16 (AugReg IN-21k ->
# IN-1k), S=20 selectors, P=20 prompts in the first 5 blocks, pre-head L2 norm, concat
# head; Adam lr 0.03 * 128 / 256, batch 128, 30 epochs per task, cosine per epoch; inputs in
# [0, 1] without normalisation. 168,960 trainable parameters per task.
# Layout: data/coco/{train2014,val2014}/*.jpg, data/coco/annotations/instances_*2014.json.
#   python tools/train.py configs/multilane/multilane_vit-b16_coco-b0c10.py
_base_ = ['../_base_/default_runtime.py']
# after _base_: mmengine reads a config that starts with an import as a lazy-import config
from modzoo.datasets.class_incremental import split_classes  # noqa: E402

coco_classes = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat',
    'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack',
    'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball',
    'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket',
    'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
    'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair',
    'couch', 'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse',
    'remote', 'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
    'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier',
    'toothbrush')
class_split = dict(base=0, increment=10)
class_mask = split_classes(coco_classes, **class_split)
epochs_per_task = 30
batch_size = 128

model = dict(
    type='MultiLane',
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[0., 0., 0.],
                           std=[255., 255., 255.]),
    backbone=dict(type='MultiLaneViT', arch='vit_base_patch16_224.augreg_in21k_ft_in1k',
                  pretrained=True, num_tasks=len(class_mask), num_selectors=20,
                  num_prompts=20, num_prompt_layers=5),
    head=dict(type='PathwayHead', num_classes=len(coco_classes), class_mask=class_mask,
              mode='concat', normalize=True))

dataset = dict(type='CocoDataset', data_root='data/coco', with_mask=False, multilabel=True,
               metainfo=dict(classes=coco_classes))
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=224, scale=(0.05, 1.0), interpolation='bilinear'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackTaskInputs'),
]
test_pipeline = [
    dict(type='LoadImage'),
    # torchvision Resize(256, bicubic): the short side to 256
    dict(type='Resize', scale=(256, 100000), keep_ratio=True, interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackTaskInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='MultiTaskDataset', sources=dict(multilabel=dict(
        tasks=['multilabel'], dataset=dict(**dataset, split='train2014',
                                           pipeline=train_pipeline)))))
val_dataloader = dict(
    batch_size=24,
    num_workers=8,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='MultiTaskDataset', sources=dict(multilabel=dict(
        tasks=['multilabel'], dataset=dict(**dataset, split='val2014',
                                           pipeline=test_pipeline)))))
test_dataloader = val_dataloader
# MULTI-LANE's threshold; CF1_mean is its CF1 (mean per-class F1), CF1 is ML-GCN's
val_evaluator = [dict(type='IncrementalMultiLabelMetric', task='multilabel', thr=0.8)]
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(type='Adam', lr=0.03 * batch_size / 256,
                                    betas=(0.9, 0.999), eps=1e-8, weight_decay=0.))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=epochs_per_task,
                        T_max=epochs_per_task)]
train_cfg = dict(type='IncrementalLoop', class_split=class_split,
                 epochs_per_task=epochs_per_task, logits_module='head.fc')
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='IncrementalTestLoop')  # after task t: the classes of tasks 0..t
default_hooks = dict(checkpoint=dict(by_epoch=True, interval=1, max_keep_ckpts=2))
