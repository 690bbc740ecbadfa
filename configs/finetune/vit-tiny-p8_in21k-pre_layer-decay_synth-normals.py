# (c) Layer-wise learning-rate decay (BEiT / MAE fine-tuning) on recipe (a): the head trains at
# the full rate, the last block at 0.75 times it, each block below at 0.75 times the one above
# it, the patch and position embeddings at 0.75^13 = 0.024 times (the constructor logs the
# scale of every layer).
#   python tools/train.py configs/finetune/vit-tiny-p8_in21k-pre_layer-decay_synth-normals.py
_base_ = ['./vit-tiny-p8_in21k-pre_synth-normals.py']

optim_wrapper = dict(constructor='LayerDecayOptimWrapperConstructor',
                     paramwise_cfg=dict(layer_decay_rate=0.75))
