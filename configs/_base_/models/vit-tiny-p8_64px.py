# ViT-Tiny (embed 192, depth 12, 3 heads) with 8-px patches for 64-px SynthScenes images.
# Heads are set by each config (they depend on its tasks and classes).
model = dict(
    type='MultiTaskModel',
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375]),
    backbone=dict(type='ViT', arch='tiny', img_size=64, patch_size=8, out_indices=(3, 7, 11),
                  drop_path_rate=0.1),
)
