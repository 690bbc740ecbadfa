# Four heterogeneous SynthScenes datasets, each labelling one task:
# ImageNet folders -> cls, ADE20K -> semseg, NYUD-v2 depth -> depth, VOC -> multilabel.
# They are rendered into data/synth on first use (nowhere else: a missing DIR is an error that
# names the command, `python tools/make_synth_data.py --out DIR`). One override moves all of them:
#   --cfg-options train_dataloader.dataset.data_root=DIR val_dataloader.dataset.data_root=DIR
_base_ = ['./synth_classes.py']

data_root = 'data/synth'

image_train = [dict(type='LoadImage'), dict(type='RandomFlip', prob=0.5),
               dict(type='PackTaskInputs')]
labelled_train = [dict(type='LoadImage'), dict(type='LoadTaskAnnotations'),
                  dict(type='RandomFlip', prob=0.5), dict(type='PackTaskInputs')]
image_val = [dict(type='LoadImage'), dict(type='PackTaskInputs')]
labelled_val = [dict(type='LoadImage'), dict(type='LoadTaskAnnotations'),
                dict(type='PackTaskInputs')]

cls_data = dict(type='ImageNetDataset', data_root='imagenet',
                metainfo=dict(classes={{_base_.synth_voc_classes}}))
semseg_data = dict(type='ADE20KDataset', data_root='ade20k',
                   metainfo=dict(classes={{_base_.synth_semantic_classes}}))
depth_data = dict(type='NYUDDataset', data_root='nyud', labels=('depth', ))
multilabel_data = dict(type='VOCDataset', data_root='voc/VOCdevkit/VOC2007',
                       metainfo=dict(classes={{_base_.synth_voc_classes}}))

train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='TaskBalancedSampler', weighting='uniform'),
    dataset=dict(
        type='MultiTaskDataset',
        data_root=data_root,
        synth_if_missing=True,
        sources=dict(
            cls=dict(tasks=['cls'], dataset=dict(
                **cls_data, split='train', pipeline=image_train)),
            semseg=dict(tasks=['semseg'], dataset=dict(
                **semseg_data, split='train', pipeline=labelled_train)),
            depth=dict(tasks=['depth'], dataset=dict(
                **depth_data, split='train', pipeline=labelled_train)),
            multilabel=dict(tasks=['multilabel'], dataset=dict(
                **multilabel_data, split='train', pipeline=labelled_train)),
        )))

val_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='MultiTaskDataset',
        data_root=data_root,
        synth_if_missing=True,
        sources=dict(
            cls=dict(tasks=['cls'], dataset=dict(
                **cls_data, split='val', pipeline=image_val)),
            semseg=dict(tasks=['semseg'], dataset=dict(
                **semseg_data, split='val', pipeline=labelled_val)),
            depth=dict(tasks=['depth'], dataset=dict(
                **depth_data, split='val', pipeline=labelled_val)),
            multilabel=dict(tasks=['multilabel'], dataset=dict(
                **multilabel_data, split='val', pipeline=labelled_val)),
        )))
test_dataloader = val_dataloader

val_evaluator = [
    dict(type='Accuracy', task='cls', topk=(1, 5)),
    dict(type='IoUMetric', task='semseg', num_classes=13),
    dict(type='DepthMetric', task='depth'),
    dict(type='MultiLabelMetric', task='multilabel', thr=0.5),
]
test_evaluator = val_evaluator
