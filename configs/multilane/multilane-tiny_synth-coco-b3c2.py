# multilane-tiny_synth-voc-b3c2.py on the COCO-format twin of the same SynthScenes:
# CocoDataset with image-level multi-hot labels from the instance annotations (every
# annotation counts, as in the COCO MLCIL protocol).
_base_ = ['./multilane-tiny_synth-voc-b3c2.py']

coco = dict(_delete_=True, type='CocoDataset', data_root='coco', with_mask=False,
            multilabel=True, metainfo=dict(classes=_base_.synth_voc_classes))
train_dataloader = dict(dataset=dict(sources=dict(multilabel=dict(dataset=dict(
    **coco, split='train', pipeline=_base_.train_pipeline)))))
val_dataloader = dict(dataset=dict(sources=dict(multilabel=dict(dataset=dict(
    **coco, split='val', pipeline=_base_.test_pipeline)))))
test_dataloader = val_dataloader
