# TaskExpert-tiny: ViT-Tiny/8 with a Memorial-MoE neck at its four tapped layers, on
# SynthScenes in the PASCAL-Context layout (64 px). Everything else is the shared-heads
# baseline.
_base_ = ['./shared-heads_vit-tiny-p8_synth-pascal.py']

tasks = ['semseg', 'parts', 'saliency', 'normals', 'edge']
neck_channels = 128
model = dict(
    neck=dict(type='TaskExpertNeck', tasks=tasks, in_channels=192, in_index=(0, 1, 2, 3),
              channels=neck_channels, num_experts=6, expert_type='linear',
              gate_input='tokens', memory_update='residual'),
    # each head reads its task's final memory
    heads=dict(
        semseg=dict(in_channels=neck_channels, in_index=0),
        parts=dict(in_channels=neck_channels, in_index=0),
        saliency=dict(in_channels=neck_channels, in_index=0),
        normals=dict(in_channels=neck_channels, in_index=0),
        edge=dict(in_channels=neck_channels, in_index=0),
    ),
)
