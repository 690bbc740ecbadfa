# ViT-Tiny/8 trained jointly on four heterogeneous SynthScenes datasets (64 px):
# classification, semantic segmentation, depth and multi-label classification, one task per
# batch. `make demo` trains it and compares every metric with the training-label prior.
_base_ = [
    '../_base_/models/vit-tiny-p8_64px.py',
    '../_base_/datasets/synth_hetero.py',
    '../_base_/schedules/adamw_cosine_iter.py',
    '../_base_/default_runtime.py',
]

model = dict(heads=dict(
    cls=dict(type='ClsHead', num_classes=11, in_channels=192),
    semseg=dict(type='SemSegHead', num_classes=13, in_channels=192, in_index=(0, 1, 2)),
    # init_depth: the median depth of the SynthScenes NYUD-v2 training pixels (4.28 m)
    depth=dict(type='DepthHead', in_channels=192, in_index=(0, 1, 2), init_depth=4.3),
    multilabel=dict(type='MultiLabelClsHead', num_classes=11, in_channels=192),
))
