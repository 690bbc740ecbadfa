# SynthScenes (64 px, 2000 train / 400 val) in the VOC2007 layout as multi-label
# class-incremental data: task 'multilabel', the 11 object classes, images in [0, 1] (as
# MULTI-LANE, no mean/std normalisation). The IncrementalLoop (train_cfg) cuts both sets per
# task. Rendered into data/synth on first use.
_base_ = ['./synth_classes.py']

data_root = 'data/synth'
voc = dict(type='VOCDataset', data_root='voc/VOCdevkit/VOC2007',
           metainfo=dict(classes={{_base_.synth_voc_classes}}))
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=64, scale=(0.5, 1.0)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackTaskInputs'),
]
test_pipeline = [dict(type='LoadImage'), dict(type='PackTaskInputs')]

data_preprocessor = dict(type='ImgDataPreprocessor', mean=[0., 0., 0.], std=[255., 255., 255.])
train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='MultiTaskDataset', data_root=data_root, synth_if_missing=True,
        sources=dict(multilabel=dict(tasks=['multilabel'], dataset=dict(
            **voc, split='train', pipeline=train_pipeline)))))
val_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='MultiTaskDataset', data_root=data_root, synth_if_missing=True,
        sources=dict(multilabel=dict(tasks=['multilabel'], dataset=dict(
            **voc, split='val', pipeline=test_pipeline)))))
test_dataloader = val_dataloader
# MULTI-LANE's threshold; CF1_mean is its CF1 (mean per-class F1), CF1 is ML-GCN's
val_evaluator = [dict(type='IncrementalMultiLabelMetric', task='multilabel', thr=0.8)]
test_evaluator = val_evaluator
