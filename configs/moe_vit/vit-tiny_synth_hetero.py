# Dense baseline of moe-vit-tiny_synth_hetero.py: ViT-Tiny/8 trained jointly on four
# heterogeneous SynthScenes datasets (64 px), one task per batch (TaskBalancedSampler):
# ImageNet folders -> cls, ADE20K -> semseg, NYUD-v2 depth -> depth, NYUD-v2 normals ->
# normals. The quickstart recipe (600 iterations of batch 32) with surface normals in place
# of multi-label classification.
_base_ = ['../quickstart/vit-tiny_synth_mtl.py']

model = dict(heads=dict(
    _delete_=True,
    cls=dict(type='ClsHead', num_classes=11, in_channels=192),
    semseg=dict(type='SemSegHead', num_classes=13, in_channels=192, in_index=(0, 1, 2)),
    depth=dict(type='DepthHead', in_channels=192, in_index=(0, 1, 2)),
    normals=dict(type='NormalHead', in_channels=192, in_index=(0, 1, 2)),
))

normals_data = dict(type='NYUDDataset', data_root='nyud', labels=('normal', ))
train_dataloader = dict(dataset=dict(sources=dict(
    _delete_=True,
    cls={{_base_.train_dataloader.dataset.sources.cls}},
    semseg={{_base_.train_dataloader.dataset.sources.semseg}},
    depth={{_base_.train_dataloader.dataset.sources.depth}},
    normals=dict(tasks=['normals'], dataset=dict(
        **normals_data, split='train', pipeline={{_base_.labelled_train}})))))
val_dataloader = dict(dataset=dict(sources=dict(
    _delete_=True,
    cls={{_base_.val_dataloader.dataset.sources.cls}},
    semseg={{_base_.val_dataloader.dataset.sources.semseg}},
    depth={{_base_.val_dataloader.dataset.sources.depth}},
    normals=dict(tasks=['normals'], dataset=dict(
        **normals_data, split='val', pipeline={{_base_.labelled_val}})))))
test_dataloader = val_dataloader

val_evaluator = [
    dict(type='Accuracy', task='cls', topk=(1, 5)),
    dict(type='IoUMetric', task='semseg', num_classes=13),
    dict(type='DepthMetric', task='depth'),
    dict(type='NormalMetric', task='normals'),
]
test_evaluator = val_evaluator
