# SynthScenes (64 px, 2000 train / 400 val) in the PASCAL-Context layout: the
# pascal_context.py protocol with a 64x64 crop and canvas, the 13 SynthScenes semantic and 7
# part classes. The synth LabelMap holds the semantic index, so normals are kept on every
# pixel (normal_classes=None). Rendered into data/synth on first use.
_base_ = ['./pascal_context.py', './synth_classes.py']

data_root = 'data/synth'
crop_size = (64, 64)

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='LoadTaskAnnotations'),
    dict(type='RandomScale', ratio_range=(0.5, 2.0)),
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
synth_pascal = dict(data_root='pascal_context', normal_classes=None,
                    metainfo=dict(classes={{_base_.synth_semantic_classes}},
                                  part_classes={{_base_.synth_part_classes}}))

train_dataloader = dict(
    batch_size=16,
    dataset=dict(data_root=data_root, synth_if_missing=True, sources=dict(pascal=dict(
        dataset=dict(**synth_pascal, pipeline=train_pipeline)))))
val_dataloader = dict(
    batch_size=32,
    dataset=dict(data_root=data_root, synth_if_missing=True, sources=dict(pascal=dict(
        dataset=dict(**synth_pascal, pipeline=test_pipeline)))))
test_dataloader = val_dataloader

val_evaluator = [
    dict(type='IoUMetric', task='semseg', num_classes=13),
    dict(type='IoUMetric', task='parts', num_classes=7, key='parts'),
    dict(type='SaliencyMetric', task='saliency', official_sigmoid_quirk=False),
    dict(type='NormalMetric', task='normals'),
    dict(type='BoundaryMetric', task='edge', max_dist=0.0075),
]
test_evaluator = val_evaluator
