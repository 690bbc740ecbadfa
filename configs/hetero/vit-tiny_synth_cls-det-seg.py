# Dense twin of moe-vit-tiny_synth_cls-det-seg.py: ViT-Tiny/8 trained jointly on three
# heterogeneous SynthScenes datasets, each labelling one task, one task per batch
# (TaskBalancedSampler, temperature weights, a batch size per source):
#   ImageNet folders -> cls (64 px, batch 32), COCO instances -> det (Mask R-CNN, 128 px,
#   batch 4), ADE20K -> semseg (64 px, batch 32).
# The scenes are rendered at 128 px into data/synth128 (first use: a few minutes);
# classification and segmentation resize them to 64 px.
_base_ = [
    '../_base_/models/vit-tiny-p8_64px.py',
    '../_base_/datasets/synth_hetero.py',
    '../_base_/schedules/adamw_cosine_iter.py',
    '../_base_/default_runtime.py',
]

model = dict(
    heads=dict(
        cls=dict(type='ClsHead', num_classes=11, in_channels=192),
        # ViTDet's Mask R-CNN, narrowed for the CPU: the 8-px patch grid (stride 8) becomes
        # strides 4-64; anchors 4x the stride (SynthScenes objects are 18-76 px at 128 px)
        det=dict(type='MaskRCNNHead', num_classes=11, in_channels=192, channels=64,
                 neck=dict(type='SimpleFeaturePyramid', scale_factors=(2.0, 1.0, 0.5, 0.25)),
                 anchor_sizes=((16, ), (32, ), (64, ), (128, ), (256, )),
                 rpn_convs=1, box_convs=0, box_fc=256, mask_convs=2,
                 rpn_cfg=dict(pre_nms_top_n=dict(training=1000, testing=500),
                              post_nms_top_n=dict(training=500, testing=300)),
                 roi_cfg=dict(batch_size_per_image=128, detections_per_img=50)),
        semseg=dict(type='SemSegHead', num_classes=13, in_channels=192, in_index=(0, 1, 2)),
    ),
    # per-task loss weights (the sum of the five Mask R-CNN losses is about 5x the others
    # at the start)
    loss_weights=dict(cls=1.0, det=1.0, semseg=1.0),
)

# the cls and semseg datasets and pipelines of synth_hetero.py; the 128-px scenes are resized
# to 64 px after loading
data_root = 'data/synth128'
small = dict(type='Resize', scale=64)
cls_train = _base_.image_train[:1] + [small] + _base_.image_train[1:]
cls_val = _base_.image_val[:1] + [small] + _base_.image_val[1:]
seg_train = _base_.labelled_train[:2] + [small] + _base_.labelled_train[2:]
seg_val = _base_.labelled_val[:2] + [small] + _base_.labelled_val[2:]
# large-scale jitter, mild for a short schedule (ViTDet: ratio 0.1-2.0 at 1024 px)
det_train = [dict(type='LoadImage'), dict(type='LoadTaskAnnotations'),
             dict(type='RandomResize', scale=128, ratio_range=(0.5, 1.5)),
             dict(type='RandomCrop', crop_size=128), dict(type='RandomFlip', prob=0.5),
             dict(type='Pad', size=128), dict(type='PackTaskInputs')]
det_val = _base_.labelled_val
det_data = dict(type='CocoDataset', data_root='coco')


def hetero_dataset(split, cls_pipeline, det_pipeline, seg_pipeline):
    """The three one-task sources of ``split``, in the order the sampler draws them."""
    return dict(
        _delete_=True,
        type='MultiTaskDataset',
        data_root=data_root,
        synth_if_missing=dict(root=data_root, size=128),
        sources=dict(
            cls=dict(tasks=['cls'], dataset=dict(**_base_.cls_data, split=split,
                                                 pipeline=cls_pipeline)),
            det=dict(tasks=['det'], dataset=dict(**det_data, split=split, pipeline=det_pipeline)),
            semseg=dict(tasks=['semseg'], dataset=dict(**_base_.semseg_data, split=split,
                                                       pipeline=seg_pipeline))))


train_dataloader = dict(
    batch_sampler=dict(weighting='temperature', temperature=2.0, batch_sizes=dict(det=4)),
    dataset=hetero_dataset('train', cls_train, det_train, seg_train))
val_dataloader = dict(batch_size=16, dataset=hetero_dataset('val', cls_val, det_val, seg_val))
test_dataloader = val_dataloader

val_evaluator = [
    dict(type='Accuracy', task='cls', topk=(1, 5)),
    dict(type='CocoMetric', task='det'),   # ground truth: the COCO json of the det source
    dict(type='IoUMetric', task='semseg', num_classes=13),
]
test_evaluator = val_evaluator

max_iters = 600  # about 200 batches per task
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, end=max_iters, eta_min=1e-5),
]

# every 10th val / test batch drawn (image, gt, predictions) into the work dir's vis_data
visualizer = dict(type='TaskVisualizer', vis_backends=[dict(type='LocalVisBackend')])
custom_hooks = [dict(type='RandomStateHook'), dict(type='TaskVisualizationHook', interval=10)]
