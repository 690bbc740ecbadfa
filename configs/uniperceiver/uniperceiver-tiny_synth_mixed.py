# Ablation (paper Tab. 4 'Mixed'): every batch mixes the four tasks (a plain DefaultSampler
# over the sources; each task's loss on its share of the batch), plain AdamW at the tiny
# config's learning rate: TBGN needs one task per step.
_base_ = ['./uniperceiver-tiny_synth.py']

train_dataloader = dict(batch_sampler=None)
optim_wrapper = dict(optimizer=dict(type='AdamW'))
custom_hooks = [dict(type='RandomStateHook')]
