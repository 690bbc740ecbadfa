# (a) A pretrained backbone with a new head for a new task. timm's ViT-Tiny/16 trained on
# ImageNet-21k (then 1k) becomes a ViT-Tiny/8 for 64-px images (patch embedding and position
# embedding resampled on load) and gets a NormalHead for surface normals, a task the ImageNet
# model never saw, trained on SynthScenes in the NYUD-v2 layout. Everything is fine-tuned; the
# optimizer constructor logs the trainable and total parameter counts when training starts.
#   python tools/train.py configs/finetune/vit-tiny-p8_in21k-pre_synth-normals.py
# Start from the quickstart model's backbone instead (train it first; the zoo name reads the
# newest checkpoint of work_dirs/vit-tiny_synth_mtl/):
#   --cfg-options model.backbone.init_cfg.checkpoint=modzoo://vit-tiny_synth_mtl
#                 model.backbone.init_cfg.prefix=backbone.
_base_ = [
    '../_base_/models/vit-tiny-p8_64px.py',
    '../_base_/datasets/synth_nyud.py',
    '../_base_/schedules/adamw_cosine_iter.py',
    '../_base_/default_runtime.py',
]

model = dict(
    # the normalisation the timm weights were trained with (mean = std = 0.5)
    data_preprocessor=dict(mean=[127.5] * 3, std=[127.5] * 3),
    backbone=dict(init_cfg=dict(type='Pretrained',
                                checkpoint='timm:vit_tiny_patch16_224.augreg_in21k_ft_in1k')),
    heads=dict(normals=dict(type='NormalHead', in_channels=192, in_index=(0, 1, 2))))

# only the normals of the SynthScenes NYUD-v2 set
normals_only = dict(tasks=['normals'], dataset=dict(labels=('normal', )))
train_dataloader = dict(batch_size=32, dataset=dict(sources=dict(nyud=normals_only)))
val_dataloader = dict(dataset=dict(sources=dict(nyud=normals_only)))
test_dataloader = val_dataloader
val_evaluator = [dict(type='NormalMetric', task='normals')]
test_evaluator = val_evaluator

max_iters = 300
optim_wrapper = dict(constructor='FreezeOptimWrapperConstructor',
                     optimizer=dict(lr=5e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=30, end=max_iters, eta_min_ratio=0.01),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
