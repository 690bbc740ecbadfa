# Full-size heterogeneous recipe of "An Efficient General-Purpose Modular Vision Model via
# Multi-Task Heterogeneous Training" (2306.17165): Mod-Squad's MoE ViT-S/16 "twice" preset
# (configs/moe_vit) trained jointly on ImageNet-1k classification, COCO 2017 instance
# segmentation and ADE20K semantic segmentation, one dataset per batch.
# Not trained here; tests/tools/test_hetero_configs.py builds it, asserts its parameter
# counts and runs it on a small batch.
# From the paper's code lineage (research/modsquad.md): the backbone, MI loss, the schedule
# of the moe_vit config this one extends. ASSUMED (the paper's method section and tables were
# not retrieved): the detector (ViTDet's Mask R-CNN with a simple feature pyramid, 1024-px
# large-scale jitter), the sampling rule (temperature 2 over the dataset sizes), the batch
# size per rank (ImageNet 64, COCO 2, ADE20K 64 at 224 px as in the moe_vit config) and equal
# loss weights.
_base_ = ['../moe_vit/moe-vit-s16_modsquad-twice_in1k-ade20k-224px.py']

embed_dim = 384
model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(tasks=['cls', 'det', 'semseg']),
    heads=dict(det=dict(type='MaskRCNNHead', num_classes=80, in_channels=embed_dim)),
    loss_weights=dict(cls=1.0, det=1.0, semseg=1.0))

coco = dict(type='CocoDataset', data_root='coco')
det_size = 1024
train_dataloader = dict(
    batch_sampler=dict(type='TaskBalancedSampler', weighting='temperature', temperature=2.0,
                       batch_sizes=dict(det=2)),
    dataset=dict(sources=dict(det=dict(tasks=['det'], dataset=dict(
        **coco, split='train', filter_empty_gt=True, pipeline=[
            dict(type='LoadImage'),
            dict(type='LoadTaskAnnotations'),
            dict(type='RandomFlip', prob=0.5),
            dict(type='RandomResize', scale=det_size, ratio_range=(0.1, 2.0)),
            dict(type='RandomCrop', crop_size=det_size),
            dict(type='Pad', size=det_size),
            dict(type='PackTaskInputs')])))))
val_dataloader = dict(dataset=dict(sources=dict(det=dict(tasks=['det'], dataset=dict(
    **coco, split='val', pipeline=[
        dict(type='LoadImage'),
        dict(type='LoadTaskAnnotations'),
        dict(type='Resize', scale=det_size, keep_ratio=True),
        dict(type='Pad', size=det_size),
        dict(type='PackTaskInputs')])))))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='Accuracy', task='cls', topk=(1, 5)),
    dict(type='CocoMetric', task='det'),
    dict(type='IoUMetric', task='semseg', num_classes=150),
]
test_evaluator = val_evaluator
