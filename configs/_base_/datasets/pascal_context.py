# PASCAL-Context (ATRC/InvPT copy: 4998 train, 5105 val) for semseg (21 classes), human parts
# (7), saliency, normals and edge, with the InvPT/TaskPrompter protocol (research/taskexpert.md
# §2-§4): train: random scale 0.5-2, 512x512 crop with cat_max_ratio 0.75, flip (normal x
# negated), photometric distortion, pad to 512x512; test: pad to 512x512, no resize; padded
# pixels are ignored by every loss and metric.
# Saliency maxF: the correct computation by default; `official_sigmoid_quirk=True` in its
# metric reproduces the published (InvPT/TaskPrompter/TaskExpert) numbers.
data_root = 'data/PASCALContext'
crop_size = (512, 512)
pascal_tasks = ['semseg', 'parts', 'saliency', 'normals', 'edge']

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
pascal = dict(type='PascalContextDataset', data_root=data_root)

train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='MultiTaskDataset', sources=dict(pascal=dict(
        tasks=pascal_tasks, dataset=dict(**pascal, split='train', pipeline=train_pipeline)))))
val_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='MultiTaskDataset', sources=dict(pascal=dict(
        tasks=pascal_tasks, dataset=dict(**pascal, split='val', pipeline=test_pipeline)))))
test_dataloader = val_dataloader

val_evaluator = [
    dict(type='IoUMetric', task='semseg', num_classes=21),
    dict(type='IoUMetric', task='parts', num_classes=7, key='parts'),
    dict(type='SaliencyMetric', task='saliency', official_sigmoid_quirk=False),
    dict(type='NormalMetric', task='normals'),
    dict(type='BoundaryMetric', task='edge', max_dist=0.0075),
]
test_evaluator = val_evaluator
