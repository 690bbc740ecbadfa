# MoE ViT-Tiny/8 trained jointly on three heterogeneous SynthScenes datasets (the recipe of
# "An Efficient General-Purpose Modular Vision Model via Multi-Task Heterogeneous Training"
# at toy scale): ImageNet folders -> cls, COCO instances -> det (Mask R-CNN on a simple
# feature pyramid), ADE20K -> semseg, one task per batch. Everything but the backbone is
# vit-tiny_synth_cls-det-seg.py, its dense twin.
# Backbone: Mod-Squad's "twice" layout on ViT-Tiny as in configs/moe_vit (MoA in the even
# blocks, 16-expert top-4 MoE MLP in the odd ones, one router per task, MI loss estimated
# across iterations). The detection task routes its own experts; its pyramid is built from
# the last map of its pass.
_base_ = ['./vit-tiny_synth_cls-det-seg.py',
          '../_base_/models/moe-vit-tiny-p8_64px_twice.py']

model = dict(backbone=dict(_delete_=True, tasks=['cls', 'det', 'semseg'],
                           **_base_.moe_vit_tiny_twice))

custom_hooks = [dict(type='RandomStateHook'), dict(type='ExpertUsageHook'),
                dict(type='TaskVisualizationHook', interval=10)]
