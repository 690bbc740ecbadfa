# Baseline (a) of TaskExpert-tiny: a shared ViT-Tiny/8 whose four tapped maps go straight
# to one head per task (no neck), on SynthScenes in the PASCAL-Context layout (64 px). Same
# backbone, data, losses, loss weights and schedule as taskexpert_vit-tiny-p8_synth-pascal.py.
# The single-task baselines (b) are this config with one task:
#   python tools/train_single_task.py configs/taskexpert/shared-heads_vit-tiny-p8_synth-pascal.py
_base_ = [
    '../_base_/models/vit-tiny-p8_64px.py',
    '../_base_/datasets/synth_pascal.py',
    '../_base_/schedules/invpt_poly_40k.py',
    '../_base_/default_runtime.py',
]

# the ViT-L/16 taps (blocks 6, 12, 18, 24 of 24) scaled to 12 blocks
model = dict(
    backbone=dict(out_indices=(2, 5, 8, 11)),
    heads=dict(
        semseg=dict(type='SemSegHead', num_classes=13, in_channels=192, in_index=(0, 1, 2, 3)),
        parts=dict(type='SemSegHead', num_classes=7, gt_key='gt_parts', in_channels=192,
                   in_index=(0, 1, 2, 3)),
        saliency=dict(type='SaliencyHead', in_channels=192, in_index=(0, 1, 2, 3)),
        normals=dict(type='NormalHead', in_channels=192, in_index=(0, 1, 2, 3)),
        edge=dict(type='EdgeHead', in_channels=192, in_index=(0, 1, 2, 3)),
    ),
    # InvPT's fixed PASCAL-Context weights
    loss_weights=dict(semseg=1.0, parts=2.0, saliency=5.0, normals=10.0, edge=50.0),
)

# The InvPT recipe (Adam, poly decay) shortened for a model trained from scratch on a CPU:
# lr 1e-3 instead of 2e-5 (no pretrained weights) after a 50-iteration warm-up, gradients
# clipped at norm 10 (as TaskPrompter), 1000 iterations of batch 8.
max_iters = 1000
train_dataloader = dict(batch_size=8)
optim_wrapper = dict(optimizer=dict(lr=1e-3), clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', power=0.9, eta_min=0.0, by_epoch=False, begin=50, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=max_iters))
