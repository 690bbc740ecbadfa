# (a) Fine-tune an extracted expert sub-network on a new task, training only the routers and
# the new head (Mod-Squad main_pru_tuning.py, with the experts really frozen: requires_grad
# False; the reference's module-level flag freezes nothing). The sub-network is the 'cls'
# experts of moe-vit-tiny_synth_hetero.py (moe-vit-tiny_synth_hetero_extract-cls.py: its
# expert counts and weights come from modzoo://moe-vit-tiny_synth_hetero_extract-cls); the
# new task is multi-label classification on the SynthScenes VOC set, which the MoE model never
# saw. Make the sub-network first (the commands of moe-vit-tiny_synth_hetero_extract-cls.py:
# train, then tools/extract.py --usage-rule total, the rule the README's figures used), then
#   python tools/train.py configs/finetune/moe_routers-head_extract-cls_synth-voc.py
# The task's router starts from the 'cls' router. The optimizer constructor logs the trainable
# parameter count.
_base_ = ['./moe-vit-tiny_synth_hetero_extract-cls.py']

model = dict(
    backbone=dict(tasks=['multilabel']),
    heads=dict(_delete_=True,
               multilabel=dict(type='MultiLabelClsHead', num_classes=11, in_channels=192)))

voc = dict(type='VOCDataset', data_root='voc/VOCdevkit/VOC2007',
           metainfo=dict(classes={{_base_.synth_voc_classes}}))
train_dataloader = dict(dataset=dict(sources=dict(_delete_=True, multilabel=dict(
    tasks=['multilabel'], dataset=dict(**voc, split='train',
                                       pipeline={{_base_.labelled_train}})))))
val_dataloader = dict(dataset=dict(sources=dict(_delete_=True, multilabel=dict(
    tasks=['multilabel'], dataset=dict(**voc, split='val', pipeline={{_base_.labelled_val}})))))
test_dataloader = val_dataloader
val_evaluator = [dict(type='MultiLabelMetric', task='multilabel', thr=0.5)]
test_evaluator = val_evaluator

max_iters = 300
optim_wrapper = dict(constructor='FreezeOptimWrapperConstructor',
                     paramwise_cfg=dict(trainable=['backbone.*.router.weight', 'heads.*']))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=30, end=max_iters, eta_min=1e-5),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
