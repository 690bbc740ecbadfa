# Baseline of multilane-tiny_synth-voc-b3c2.py on the same loop and split: a linear
# multi-label head on the CLS token of the same frozen ViT-Tiny/8, trained task by task with
# the other tasks' classes masked (no pathways, no prompts).
_base_ = ['./multilane-tiny_synth-voc-b3c2.py']

model = dict(
    _delete_=True,
    type='MultiTaskModel',
    data_preprocessor={{_base_.data_preprocessor}},
    backbone={{_base_.frozen_vit}},
    heads=dict(multilabel=dict(type='MultiLabelClsHead', num_classes=11, in_channels=192)))
optim_wrapper = dict(constructor='FreezeOptimWrapperConstructor',
                     paramwise_cfg=dict(frozen=['backbone.*']))
train_cfg = dict(logits_module='heads.multilabel.fc')
