# TaskExpert with ViT-L/16 on NYUD-v2 (448x576), the InvPT/TaskPrompter recipe: Adam 2e-5,
# poly decay over 40k iterations, batch 2 per GPU (InvPT: 3 GPUs), SyncBN, fixed loss weights.
# Backbone: timm vit_large_patch16_384.augreg_in21k_ft_in1k (position embedding resampled to
# 28x36 tokens), tapped after blocks 6, 12, 18 and 24 as InvPT; drop path 0.15.
# Weights: huggingface.co/timm/vit_large_patch16_384.augreg_in21k_ft_in1k (model.safetensors),
# saved as the `pretrained` path below (or override it with --cfg-options).
_base_ = [
    '../_base_/datasets/nyud.py',
    '../_base_/schedules/invpt_poly_40k.py',
    '../_base_/default_runtime.py',
]

tasks = ['semseg', 'depth', 'normals', 'edge']
norm_cfg = dict(type='SyncBN')
neck_channels = 256
head = dict(in_channels=neck_channels, in_index=0, channels=256, norm_cfg=norm_cfg)
model = dict(
    type='MultiTaskModel',
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375]),
    backbone=dict(
        type='ViT', arch='large', img_size=(448, 576), patch_size=16,
        out_indices=(5, 11, 17, 23), drop_path_rate=0.15,
        pretrained='checkpoints/vit_large_patch16_384.augreg_in21k_ft_in1k.safetensors'),
    neck=dict(type='TaskExpertNeck', tasks=tasks, in_channels=1024, in_index=(0, 1, 2, 3),
              channels=neck_channels, num_experts=8, expert_type='linear',
              gate_input='tokens', memory_update='residual', norm_cfg=norm_cfg),
    heads=dict(
        semseg=dict(type='SemSegHead', num_classes=40, **head),
        depth=dict(type='DepthHead', **head),
        normals=dict(type='NormalHead', **head),
        edge=dict(type='EdgeHead', **head),
    ),
    # InvPT's fixed NYUD-v2 weights
    loss_weights=dict(semseg=1.0, depth=1.0, normals=10.0, edge=50.0),
)
find_unused_parameters = False
