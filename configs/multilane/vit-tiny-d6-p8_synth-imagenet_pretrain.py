# The frozen backbone of the tiny MULTI-LANE configs: a ViT-Tiny/8 with 6 blocks trained from
# scratch to classify the 11 SynthScenes objects (the dominant object of each image) on the
# synth ImageNet folders (64 px, 2000 train / 400 val images). It stands in for the
# ImageNet-21k ViT-B/16 of the paper: no pretrained weights are reachable offline and a
# random frozen ViT would leave MULTI-LANE nothing to summarise.
# Inputs are RGB scaled to [0, 1] and not normalised, as MULTI-LANE feeds its ViT.
#   python tools/train.py configs/multilane/vit-tiny-d6-p8_synth-imagenet_pretrain.py
# writes work_dirs/vit-tiny-d6-p8_synth-imagenet_pretrain/iter_800.pth, which the tiny
# MULTI-LANE configs load as modzoo://vit-tiny-d6-p8_synth-imagenet_pretrain (model.pretrained).
_base_ = [
    '../_base_/datasets/synth_classes.py',
    '../_base_/schedules/adamw_cosine_iter.py',
    '../_base_/default_runtime.py',
]

max_iters = 800
model = dict(
    type='MultiTaskModel',
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[0., 0., 0.],
                           std=[255., 255., 255.]),
    backbone=dict(type='ViT', arch=dict(embed_dim=192, depth=6, num_heads=3), img_size=64,
                  patch_size=8, out_indices=(5, ), drop_path_rate=0.1),
    heads=dict(cls=dict(type='ClsHead', num_classes=11, in_channels=192)))

data_root = 'data/synth'
imagenet = dict(type='ImageNetDataset', data_root='imagenet',
                metainfo=dict(classes={{_base_.synth_voc_classes}}))
train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='MultiTaskDataset', data_root=data_root, synth_if_missing=True,
        sources=dict(cls=dict(tasks=['cls'], dataset=dict(
            **imagenet, split='train',
            pipeline=[dict(type='LoadImage'),
                      dict(type='RandomResizedCrop', size=64, scale=(0.35, 1.0)),
                      dict(type='RandomFlip', prob=0.5),
                      dict(type='PackTaskInputs')])))))
val_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='MultiTaskDataset', data_root=data_root, synth_if_missing=True,
        sources=dict(cls=dict(tasks=['cls'], dataset=dict(
            **imagenet, split='val',
            pipeline=[dict(type='LoadImage'), dict(type='PackTaskInputs')])))))
test_dataloader = val_dataloader
val_evaluator = [dict(type='Accuracy', task='cls', topk=(1, ))]
test_evaluator = val_evaluator

param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, end=max_iters, eta_min=1e-5),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
