# MoE ViT-Tiny/8 trained jointly on four heterogeneous SynthScenes datasets (64 px), one task
# per batch (TaskBalancedSampler): ImageNet folders -> cls, ADE20K -> semseg, NYUD-v2 depth ->
# depth, NYUD-v2 normals -> normals. Everything but the backbone is vit-tiny_synth_hetero.py,
# its dense baseline (same data, heads, losses, schedule: 600 iterations of batch 32).
# Backbone: Mod-Squad's "twice" layout on ViT-Tiny: mixture of attention heads in the even
# blocks (6 query experts, top-3 = heads, one shared key/value head of width 64), MoE MLP in
# the odd blocks (16 experts of hidden 192 = 4D/k, top-4: the active experts cost one dense
# MLP), one router per task, renormalised top-k gates, Mod-Squad's MI loss (w 0.005 per layer)
# estimated across iterations because every batch holds one task.
_base_ = ['./vit-tiny_synth_hetero.py', '../_base_/models/moe-vit-tiny-p8_64px_twice.py']

model = dict(backbone=dict(_delete_=True, tasks=['cls', 'semseg', 'depth', 'normals'],
                           **_base_.moe_vit_tiny_twice))

# expert usage per task and layer, saved as JSON in the work dir after training and testing
custom_hooks = [dict(type='RandomStateHook'), dict(type='ExpertUsageHook')]
