# MoE ViT-Tiny/8 trained jointly on three heterogeneous SynthScenes datasets (the recipe of
# "An Efficient General-Purpose Modular Vision Model via Multi-Task Heterogeneous Training"
# at toy scale): ImageNet folders -> cls, COCO instances -> det (Mask R-CNN on a simple
# feature pyramid), ADE20K -> semseg, one task per batch. Everything but the backbone is
# vit-tiny_synth_cls-det-seg.py, its dense twin.
# Backbone: Mod-Squad's "twice" layout on ViT-Tiny as in configs/moe_vit (MoA in the even
# blocks, 16-expert top-4 MoE MLP in the odd ones, one router per task, MI loss estimated
# across iterations). The detection task routes its own experts; its pyramid is built from
# the last map of its pass.
_base_ = ['./vit-tiny_synth_cls-det-seg.py']

model = dict(backbone=dict(
    _delete_=True,
    type='MoEViT',
    arch='tiny',
    tasks=['cls', 'det', 'semseg'],
    img_size=64,
    patch_size=8,
    out_indices=(3, 7, 11),
    drop_path_rate=0.1,
    moa_experts=6,
    mlp_experts=16,
    mlp_top_k=4,
    mi_weight=0.005,
))

custom_hooks = [dict(type='RandomStateHook'), dict(type='ExpertUsageHook'),
                dict(type='TaskVisualizationHook', interval=10)]
