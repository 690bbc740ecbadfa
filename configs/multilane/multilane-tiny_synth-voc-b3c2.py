# MULTI-LANE-tiny on SynthScenes (VOC layout, 64 px): class-incremental multi-label
# classification of the 11 objects in 5 tasks, B3-C2 (3 classes, then 4 tasks of 2;
# alphabetical order). 11 classes admit no B0-C4-like split (see README.md).
# The frozen ViT-Tiny/8 (6 blocks) comes from vit-tiny-d6-p8_synth-imagenet_pretrain.py:
# train that config first. VOC hyper-parameters of the paper (S=P=10, Adam, lr 0.05 per
# 256 images, cosine per task), scaled down to 5 epochs per task and prompts in the first 3
# of the 6 blocks (the paper: 5 of 12).
#   python tools/train.py configs/multilane/multilane-tiny_synth-voc-b3c2.py
_base_ = ['../_base_/datasets/synth_voc_cil.py', '../_base_/default_runtime.py']
# after _base_: mmengine reads a config that starts with an import as a lazy-import config
from modzoo.datasets.class_incremental import split_classes  # noqa: E402

class_split = dict(base=3, increment=2)
class_mask = split_classes(_base_.synth_voc_classes, **class_split)
epochs_per_task = 5
batch_size = 32

# a zoo reference: published weights, else the newest checkpoint of
# work_dirs/vit-tiny-d6-p8_synth-imagenet_pretrain/, else an error naming the command to run
pretrained_vit = 'modzoo://vit-tiny-d6-p8_synth-imagenet_pretrain'
# the same frozen ViT as a modzoo backbone, for the linear-probe baselines
frozen_vit = dict(type='ViT', arch=dict(embed_dim=192, depth=6, num_heads=3), img_size=64,
                  patch_size=8, init_cfg=dict(type='Pretrained', prefix='backbone.',
                                              checkpoint=pretrained_vit))
model = dict(
    type='MultiLane',
    data_preprocessor={{_base_.data_preprocessor}},
    pretrained=pretrained_vit,
    backbone=dict(type='MultiLaneViT', arch='vit_tiny_patch16_224',
                  vit_cfg=dict(img_size=64, patch_size=8, depth=6),
                  num_tasks=len(class_mask), num_selectors=10, num_prompts=10,
                  num_prompt_layers=3),
    head=dict(type='PathwayHead', num_classes=len(_base_.synth_voc_classes),
              class_mask=class_mask, mode='concat'))

train_dataloader = dict(batch_size=batch_size)
# a fresh Adam and cosine schedule (stepped per epoch) for every task; lr = 0.05 * B / 256
optim_wrapper = dict(optimizer=dict(type='Adam', lr=0.05 * batch_size / 256,
                                    betas=(0.9, 0.999), eps=1e-8, weight_decay=0.))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=epochs_per_task,
                        T_max=epochs_per_task)]
train_cfg = dict(type='IncrementalLoop', class_split=class_split,
                 epochs_per_task=epochs_per_task, logits_module='head.fc')
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='IncrementalTestLoop')  # after task t: the classes of tasks 0..t
# a checkpoint after every epoch: during and between tasks
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(by_epoch=True, interval=1, max_keep_ckpts=2))
