# Full-size MoE ViT-S/16 of Mod-Squad (mtvit_taskgate_att_mlp_small_MI_twice, research/
# modsquad.md): D 384, 12 blocks, 6 heads of width 128 (2D / heads, the dense attention too);
# mixture of attention heads in the even blocks (15 experts, top-6), MoE MLP in the odd blocks
# (16 experts of hidden 384, top-4); one router per task, raw top-k gates plus the official
# 1e-4 probability floor, MI loss w 0.005; a task embedding added before every block, the
# classification feature fc_norm(mean patch token) and a LayerNorm + Linear class head, the
# official expert init. Backbone parameters, 2 tasks: 52.54 M (52,398,720 shared, the official
# count, + 71,424 router and 384 task-embedding parameters per task). Trained jointly on two
# heterogeneous datasets, one task per batch: ImageNet-1k classification and ADE20K semantic
# segmentation at 224 px (2306.17165 trains on ImageNet, COCO and ADE20K; COCO needs a
# detection head modzoo does not have yet).
# Not trained here. The data recipe of 2306.17165 (sampling, schedule, heads) was not
# retrieved; this schedule is Mod-Squad's README recipe (AdamW, blr 4e-4 x batch / 256,
# wd 0.05, drop path 0.1, warm-up then cosine) on iterations.
#   python tools/train.py configs/moe_vit/moe-vit-s16_modsquad-twice_in1k-ade20k-224px.py
#   python tools/analysis/flops.py configs/moe_vit/moe-vit-s16_modsquad-twice_in1k-ade20k-224px.py
_base_ = ['../_base_/default_runtime.py']

embed_dim = 384
model = dict(
    type='MultiTaskModel',
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], pad_size_divisor=16),
    backbone=dict(type='MoEViT', arch='modsquad-small-twice', tasks=['cls', 'semseg'],
                  img_size=224, patch_size=16, out_indices=(3, 5, 7, 11),
                  drop_path_rate=0.1),
    heads=dict(
        cls=dict(type='ClsHead', num_classes=1000, in_channels=embed_dim, pre_norm=True),
        semseg=dict(type='SemSegHead', num_classes=150, in_channels=embed_dim, channels=256,
                    in_index=(0, 1, 2, 3)),
    ))

data_root = 'data'
crop_size = (224, 224)
imagenet = dict(type='ImageNetDataset', data_root='imagenet')
ade20k = dict(type='ADE20KDataset', data_root='ade20k/ADEChallengeData2016')
train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='TaskBalancedSampler', weighting='uniform'),
    dataset=dict(type='MultiTaskDataset', data_root=data_root, sources=dict(
        cls=dict(tasks=['cls'], dataset=dict(**imagenet, split='train', pipeline=[
            dict(type='LoadImage'),
            dict(type='RandomResizedCrop', size=crop_size),
            dict(type='RandomFlip', prob=0.5),
            dict(type='PackTaskInputs')])),
        semseg=dict(tasks=['semseg'], dataset=dict(**ade20k, split='train', pipeline=[
            dict(type='LoadImage'),
            dict(type='LoadTaskAnnotations'),
            dict(type='Resize', scale=(896, 224), keep_ratio=True),
            dict(type='RandomScale', ratio_range=(0.5, 2.0)),
            dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
            dict(type='RandomFlip', prob=0.5),
            dict(type='PhotoMetricDistortion'),
            dict(type='Pad', size=crop_size),
            dict(type='PackTaskInputs')])))))
# batch 1: the ADE20K images keep their aspect ratio (short side 224)
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='MultiTaskDataset', data_root=data_root, sources=dict(
        cls=dict(tasks=['cls'], dataset=dict(**imagenet, split='val', pipeline=[
            dict(type='LoadImage'),
            dict(type='Resize', scale=(256, 256 * 8), keep_ratio=True),
            dict(type='CenterCrop', crop_size=crop_size),
            dict(type='PackTaskInputs')])),
        semseg=dict(tasks=['semseg'], dataset=dict(**ade20k, split='val', pipeline=[
            dict(type='LoadImage'),
            dict(type='LoadTaskAnnotations'),
            dict(type='Resize', scale=(896, 224), keep_ratio=True),
            dict(type='PackTaskInputs')])))))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='Accuracy', task='cls', topk=(1, 5)),
    dict(type='IoUMetric', task='semseg', num_classes=150),
]
test_evaluator = val_evaluator

max_iters = 160000
warmup_iters = 1500
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=4e-4 * 64 / 256, weight_decay=0.05, eps=1e-4),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={'.pos_embed': dict(decay_mult=0.0),
                                    '.cls_token': dict(decay_mult=0.0)}),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=warmup_iters, end=max_iters,
         eta_min=1e-6),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=16000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(checkpoint=dict(interval=16000, max_keep_ckpts=3))
custom_hooks = [dict(type='RandomStateHook'), dict(type='ExpertUsageHook')]
auto_scale_lr = dict(base_batch_size=64, enable=False)
