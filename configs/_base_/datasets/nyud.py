# NYUD-v2 (ATRC/InvPT copy: 795 train, 654 val) for semseg, depth, normals and edge, with the
# InvPT/TaskPrompter protocol (research/taskexpert.md §2-§4):
# train: random scale 0.5-2 (depth / scale), 448x576 crop with cat_max_ratio 0.75, flip
# (normal x negated), photometric distortion, pad to 448x576 (labels with their ignore value);
# test: pad to 448x576, no resize; padded pixels are ignored by every loss and metric.
data_root = 'data/NYUDv2'
crop_size = (448, 576)
nyud_tasks = ['semseg', 'depth', 'normals', 'edge']

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
nyud = dict(type='NYUDDataset', data_root=data_root)

train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='MultiTaskDataset', sources=dict(nyud=dict(
        tasks=nyud_tasks, dataset=dict(**nyud, split='train', pipeline=train_pipeline)))))
val_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='MultiTaskDataset', sources=dict(nyud=dict(
        tasks=nyud_tasks, dataset=dict(**nyud, split='val', pipeline=test_pipeline)))))
test_dataloader = val_dataloader

val_evaluator = [
    dict(type='IoUMetric', task='semseg', num_classes=40),
    dict(type='DepthMetric', task='depth'),
    dict(type='NormalMetric', task='normals'),
    dict(type='BoundaryMetric', task='edge', max_dist=0.011),
]
test_evaluator = val_evaluator
