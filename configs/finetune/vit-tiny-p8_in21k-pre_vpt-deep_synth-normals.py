# (b) Prompt tuning (VPT-deep; Jia et al., ECCV 2022) of the frozen pretrained backbone of
# recipe (a): 10 learned prompt tokens enter every block; only they and the new normals head
# train.
#   python tools/train.py configs/finetune/vit-tiny-p8_in21k-pre_vpt-deep_synth-normals.py
_base_ = ['./vit-tiny-p8_in21k-pre_synth-normals.py']

model = dict(backbone=dict(type='VisualPromptViT', num_prompts=10))
optim_wrapper = dict(optimizer=dict(lr=1e-3),
                     paramwise_cfg=dict(frozen=['backbone.*'], trainable=['backbone.prompts.*']))
