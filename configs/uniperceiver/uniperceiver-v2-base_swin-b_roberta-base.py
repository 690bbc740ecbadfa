# Uni-Perceiver v2 BASE (paper Tab. 6: 308M parameters): Swin-B (ImageNet-21k) image encoder
# with class-agnostic region proposals, RoBERTa-base text encoder, a 6-layer BERT-base decoder
# with attribute-routed conditional MoE in every FFN (Uni-Perceiver-MoE: 8 experts, top-2).
# Checked by building it and a forward pass (tests/models/test_uniperceiver_configs.py);
# training it needs the real datasets and GPUs. Parameter counts in the family README.
_base_ = ['../_base_/default_runtime.py']

swin = 'swin_base_patch4_window7_224'
swin_channels = 1024
model = dict(
    type='UniPerceiver',
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375]),
    backbone=dict(type='TimmBackbone', model_name=swin, out_indices=(3, ),
                  pretrained=f'timm:{swin}.ms_in22k', drop_path_rate=0.3),
    global_tokens=dict(type='GlobalImageTokens', in_channels=swin_channels, num_pools=1,
                       num_heads=8),
    # class-agnostic Mask R-CNN on a simple pyramid of the stride-32 map (strides 4-64);
    # its 200 best proposals per image become region tokens (O = 200, a third-party summary
    # of the paper's appendix)
    proposal_head=dict(
        type='MaskRCNNHead', num_classes=1, class_agnostic=True, in_channels=swin_channels,
        neck=dict(type='SimpleFeaturePyramid', scale_factors=(8.0, 4.0, 2.0, 1.0)),
        roi_cfg=dict(score_thresh=0.0, detections_per_img=200)),
    region_tokens=dict(type='RegionTokens', in_channels=1024),
    tokenizer=dict(type='BPETokenizer', vocab_file='hf://FacebookAI/roberta-base/tokenizer.json',
                   max_length=64),
    text_encoder=dict(type='RobertaTextEncoder', model='FacebookAI/roberta-base'),
    decoder=dict(type='UnifiedDecoder', embed_dim=768, depth=6, num_heads=12, drop=0.1,
                 moe=dict(num_experts=8, top_k=2, hidden_dims=3072), attr_dims=64),
    heads=dict(
        # class names: the dataset's (ImageNet-1k, COCO); set them with the data config
        cls=dict(type='UPClassificationHead', class_names=['class 0', 'class 1']),
        det=dict(type='UPDetectionHead', class_names=['class 0', 'class 1']),
        caption=dict(type='UPCaptionHead', beam_size=3, max_length=25),
        retrieval=dict(type='UPRetrievalHead', gather=True),
    ))

optim_wrapper = dict(optimizer=dict(type='TBGNAdamW', lr=1e-4, weight_decay=0.05))
custom_hooks = [dict(type='RandomStateHook'), dict(type='SampledTaskHook')]
