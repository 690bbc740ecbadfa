# Uni-Perceiver v2, tiny: four SynthScenes tasks through one shared decoder, one task per batch
# (unmixed sampling), Task-Balanced Gradient Normalization, features gathered across ranks.
#   classification  <- ImageNet folders          (candidates: the class names)
#   detection       <- COCO instances            (proposals classified against the class names)
#   captioning      <- COCO captions             (candidates: the BPE vocabulary)
#   retrieval       <- COCO captions             (candidates: the batch's captions, all ranks)
_base_ = ['../_base_/datasets/synth_hetero.py', '../_base_/schedules/adamw_cosine_iter.py',
          '../_base_/default_runtime.py']

data_root = 'data/synth'
embed_dim = 128

model = dict(
    type='UniPerceiver',
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375]),
    backbone=dict(type='ViT', arch=dict(embed_dim=192, depth=6, num_heads=3), img_size=64,
                  patch_size=8, out_indices=(-1, )),
    # global tokens: M'=2 attention pools + the 8x8 last map
    global_tokens=dict(type='GlobalImageTokens', in_channels=192, num_pools=2, num_heads=8),
    # class-agnostic Mask R-CNN on a 3-level pyramid (strides 4, 8, 16); its top-10 detections
    # per image become region tokens
    proposal_head=dict(
        type='MaskRCNNHead', num_classes=1, class_agnostic=True, in_channels=192, channels=32,
        neck=dict(type='SimpleFeaturePyramid', scale_factors=(2.0, 1.0, 0.5), top_pool=False),
        anchor_sizes=((8, 16), (24, 32), (48, 64)), rpn_convs=1, box_convs=0, box_fc=128,
        mask_convs=1,
        rpn_cfg=dict(pre_nms_top_n=dict(training=100, testing=100),
                     post_nms_top_n=dict(training=50, testing=50), batch_size_per_image=64),
        roi_cfg=dict(batch_size_per_image=64, score_thresh=0.01, detections_per_img=10)),
    region_tokens=dict(type='RegionTokens', in_channels=128),
    tokenizer=dict(type='BPETokenizer', vocab_file=f'{data_root}/coco/annotations/bpe_400.json',
                   captions=f'{data_root}/coco/annotations/captions_train2017.json',
                   vocab_size=400, max_length=32, synth_root=data_root),
    text_encoder=dict(type='TransformerTextEncoder', embed_dim=128, depth=2, num_heads=4,
                      max_length=32),
    decoder=dict(type='UnifiedDecoder', embed_dim=embed_dim, depth=2, num_heads=4, drop=0.0,
                 moe=dict(num_experts=4, top_k=2), attr_dims=32),
    heads=dict(
        cls=dict(type='UPClassificationHead', class_names={{_base_.synth_voc_classes}}),
        det=dict(type='UPDetectionHead', class_names={{_base_.synth_voc_classes}}),
        caption=dict(type='UPCaptionHead', beam_size=1),
        retrieval=dict(type='UPRetrievalHead', gather=True),
    ))

classes = {{_base_.synth_voc_classes}}
# SynthScenes' COCO: instances for detection, captions for captioning and retrieval; images
# of captioned sources are not flipped (captions say 'left' and 'right'). One piece per split:
# split -> (pipeline of the image-level sources, pipeline of the labelled ones)
split_pipelines = dict(train=({{_base_.image_train}}, {{_base_.labelled_train}}),
                       val=({{_base_.image_val}}, {{_base_.labelled_val}}))
sources = {split: dict(
    _delete_=True,
    cls=dict(tasks=['cls'], dataset=dict(
        type='ImageNetDataset', data_root='imagenet', metainfo=dict(classes=classes),
        split=split, pipeline=image)),
    det=dict(tasks=['det'], dataset=dict(
        type='CocoDataset', data_root='coco', metainfo=dict(classes=classes), split=split,
        pipeline=labelled)),
    **{task: dict(tasks=[task], dataset=dict(
        type='CocoDataset', data_root='coco', with_mask=False, split=split,
        caption_file=f'annotations/captions_{split}2017.json',
        pipeline={{_base_.image_val}})) for task in ('caption', 'retrieval')})
    for split, (image, labelled) in split_pipelines.items()}
train_dataloader = dict(dataset=dict(sources=sources['train']))
val_dataloader = dict(dataset=dict(sources=sources['val']))
test_dataloader = val_dataloader
train_dataloader.update(batch_size=16)

val_evaluator = [
    dict(type='Accuracy', task='cls', topk=(1, 5)),
    dict(type='CocoMetric', task='det', classwise=False),
    dict(type='CaptionMetric', task='caption'),
    dict(type='RetrievalMetric', task='retrieval'),
]
test_evaluator = val_evaluator

max_iters = 800
warmup_iters = 40
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=warmup_iters, end=max_iters,
         eta_min=1e-5),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
# TBGN: the sampled task's gradient at unit norm; Adam moments' new-gradient weight / s_k
# (s_k read from the TaskBalancedSampler by SampledTaskHook); no clipping of the raw gradient.
# lr 1e-4, 10x below the other tiny configs: the candidate side (text encoder, decoder) trains
# from scratch here, and at 1e-3 the class names' features collapse onto one vector within a
# few steps, before the image side separates the classes; the whole model at 1e-4 also beat
# the image side at 1e-3 (README, 'How the tiny recipe was found'). The paper starts the
# candidate side from a pre-trained RoBERTa instead. The class-agnostic proposal head, which
# no candidate reads, keeps 1e-3: at 1e-4 its proposals hardly reach IoU 0.5 in a short run.
optim_wrapper = dict(optimizer=dict(_delete_=True, type='TBGNAdamW', lr=1e-4,
                                    weight_decay=0.05, betas=(0.9, 0.999)),
                     clip_grad=None,
                     paramwise_cfg=dict(custom_keys={'proposal_head': dict(lr_mult=10.0)}))
custom_hooks = [dict(type='RandomStateHook'), dict(type='SampledTaskHook')]
