# SynthScenes (64 px, 2000 train / 400 val) in the NYUD-v2 layout: the nyud.py protocol with
# a 64x64 crop and canvas and the 13 SynthScenes semantic classes. Rendered into data/synth
# on first use; `--cfg-options train_dataloader.dataset.data_root=DIR
# val_dataloader.dataset.data_root=DIR` reads it from DIR (made by tools/make_synth_data.py).
_base_ = ['./nyud.py', './synth_classes.py']

data_root = 'data/synth'
crop_size = (64, 64)

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='LoadTaskAnnotations'),
    dict(type='RandomScale', ratio_range=(0.5, 2.0), scale_depth=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='Pad', size=crop_size),
    dict(type='PackTaskInputs'),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='LoadTaskAnnotations'),
    dict(type='Pad', size=crop_size),
    dict(type='PackTaskInputs'),
]
synth_nyud = dict(data_root='nyud', metainfo=dict(classes={{_base_.synth_semantic_classes}}))

train_dataloader = dict(
    batch_size=16,
    dataset=dict(data_root=data_root, synth_if_missing=True, sources=dict(nyud=dict(
        dataset=dict(**synth_nyud, pipeline=train_pipeline)))))
val_dataloader = dict(
    batch_size=32,
    dataset=dict(data_root=data_root, synth_if_missing=True, sources=dict(nyud=dict(
        dataset=dict(**synth_nyud, pipeline=test_pipeline)))))
test_dataloader = val_dataloader

val_evaluator = [
    dict(type='IoUMetric', task='semseg', num_classes=13),
    dict(type='DepthMetric', task='depth'),
    dict(type='NormalMetric', task='normals'),
    dict(type='BoundaryMetric', task='edge', max_dist=0.011),
]
test_evaluator = val_evaluator
