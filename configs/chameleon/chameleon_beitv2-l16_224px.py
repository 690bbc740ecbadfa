# Chameleon (ECCV'24) at the official size (GitGyun/chameleon meta_train/train_config.yaml):
# image encoder BEiT-v2-L/16 (timm beitv2_large_patch16_224.in1k_ft_in22k weights, layer scale
# 1e-5, drop path 0.1) with one bias set per sub-task, label encoder ViT-L/16 with one input
# channel (random init), both tapped after blocks 6, 12, 18 and 24; matching with 16 heads and
# the alpha level mix (temperature 0.05) per task group; DPT decoder widths [256, 512, 1024,
# 1024], fusion 256. n_tasks / n_task_groups are those of the meta-training task registry
# (here: modzoo's SynthScenes dense tasks, see synth_tasks.py). Built (shapes, parameter
# counts, a forward pass) by tests/models/test_chameleon_configs.py, not trained here.
model = dict(
    type='Chameleon',
    n_tasks=64,
    n_task_groups=10,
    support_chunk_size=8,
    image_encoder=dict(
        type='BiasSetBEiT', arch='large', img_size=224, patch_size=16,
        out_indices=[5, 11, 17, 23], init_values=1e-5, drop_path_rate=0.1),
    label_encoder=dict(
        type='ViT', arch='large', img_size=224, patch_size=16, out_indices=[5, 11, 17, 23],
        final_norm=False),
    matching=dict(type='TokenMatching', num_heads=16, alpha_temp=0.05, attn_drop=0.1),
    decoder=dict(type='DPTLabelDecoder', hidden_channels=[256, 512, 1024, 1024], features=256),
)
