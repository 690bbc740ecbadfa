# Chameleon at a CPU size, meta-trained on episodes of SynthScenes dense tasks (32 px): every
# family of modzoo/datasets/synth/dense_tasks.py, 4 label channels x (4 support + 4 query)
# images per episode, 2 episodes per batch, task types weighted base 1 / continuous 3 /
# categorical 3 as the official. Image encoder: a 4-block BEiT (width 96, patch 8, layer
# scale 0.1) with one bias set per sub-task; label encoder a 4-block ViT (width 64); the
# official optimiser (Adam, lr 1e-4 for the new modules and 1e-5 for the image encoder in the
# official recipe; here both from scratch at 1e-3 / 1e-3), grad-clip 2.0, poly decay.
_base_ = ['../_base_/default_runtime.py']

size = 32
exclude_families = []       # leave-task-out folds set this (see README.md)
model = dict(
    type='Chameleon',
    n_tasks=48,             # sub-tasks of dense_tasks.FAMILIES (one bias set each)
    n_task_groups=11,       # its families (one alpha row each)
    image_encoder=dict(
        type='BiasSetBEiT', arch=dict(embed_dim=96, depth=4, num_heads=3), img_size=size,
        patch_size=8, out_indices=[0, 1, 2, 3], init_values=0.1),
    label_encoder=dict(
        type='ViT', arch=dict(embed_dim=64, depth=4, num_heads=2), img_size=size,
        patch_size=8, out_indices=[0, 1, 2, 3], final_norm=False),
    matching=dict(type='TokenMatching', num_heads=4, attn_drop=0.1),
    decoder=dict(type='DPTLabelDecoder', hidden_channels=[32, 32, 64, 64], features=32),
)
train_dataloader = dict(
    batch_size=2, num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='SynthEpisodes', num_scenes=400, size=size, scene_seed=0,
                 exclude_families=exclude_families, channels=4, shot=4, query=4))
max_iters = 400
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3, weight_decay=0.),
    clip_grad=dict(max_norm=2.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', power=0.9, eta_min=0., by_epoch=False, begin=50, end=max_iters),
]
default_hooks = dict(checkpoint=dict(interval=200, max_keep_ckpts=1))
