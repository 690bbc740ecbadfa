# MULTI-LANE-tiny, single-label class-incremental variant (the official code's CIFAR-100 /
# ImageNet-R setting: cross-entropy, logits of classes outside the seen tasks at -inf) on
# the SynthScenes ImageNet folders (64 px, one object class per image, 11 classes), B3-C2
# in alphabetical order: 5 tasks. Everything else as multilane-tiny_synth-voc-b3c2.py (its
# frozen ViT-Tiny/8 was pre-trained on these very training images; see README.md).
#   python tools/train.py configs/multilane/multilane-tiny_synth-imagenet-b3c2.py
_base_ = ['./multilane-tiny_synth-voc-b3c2.py']

imagenet = dict(type='ImageNetDataset', data_root='imagenet',
                metainfo=dict(classes={{_base_.synth_voc_classes}}))
model = dict(head=dict(multi_label=False))
train_dataloader = dict(dataset=dict(sources=dict(_delete_=True, cls=dict(
    tasks=['cls'], dataset=dict(**imagenet, split='train',
                                pipeline={{_base_.train_pipeline}})))))
val_dataloader = dict(dataset=dict(sources=dict(_delete_=True, cls=dict(
    tasks=['cls'], dataset=dict(**imagenet, split='val', pipeline={{_base_.test_pipeline}})))))
test_dataloader = val_dataloader
# top-1 per task (the accuracy matrix), its mean over the seen tasks, and forgetting
val_evaluator = [dict(type='IncrementalAccuracy', task='cls', topk=(1, ))]
test_evaluator = val_evaluator
# the loop masks the head's class logits (-inf outside the active classes)
train_cfg = dict(logits_module='head', multi_label=False)
