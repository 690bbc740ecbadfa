# VTM (ICLR'23) built from Chameleon's parts (GitGyun/visual_token_matching
# configs/train_config.yaml): image encoder BEiT-B/16 (layer scale 0.1) with bias sets, label
# encoder ViT-B/16 with one input channel, both tapped after blocks 3, 6, 9 and 12; matching
# with 4 heads and NO level mix (level l matches on level l, no shared LayerNorm, no alpha);
# DPT decoder widths [96, 192, 384, 768], fusion 256. Difference from the official VTM: its
# q/v biases are shared across tasks, here they are bias sets like the other biases.
model = dict(
    type='Chameleon',
    n_tasks=64,
    n_task_groups=1,
    image_encoder=dict(
        type='BiasSetBEiT', arch='base', img_size=224, patch_size=16,
        out_indices=[2, 5, 8, 11], init_values=0.1),
    label_encoder=dict(
        type='ViT', arch='base', img_size=224, patch_size=16, out_indices=[2, 5, 8, 11],
        final_norm=False),
    matching=dict(type='TokenMatching', num_heads=4, level_mix=False, attn_drop=0.1),
    decoder=dict(type='DPTLabelDecoder', hidden_channels=[96, 192, 384, 768], features=256),
)
