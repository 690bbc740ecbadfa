# Ablation (paper Tab. 4 'Mixed'): every batch mixes the four tasks (a plain DefaultSampler
# over the sources; each task's loss on its share of the batch), plain AdamW: TBGN needs one
# task per step.
_base_ = ['./uniperceiver-tiny_synth.py']

train_dataloader = dict(batch_sampler=None)
optim_wrapper = dict(optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=0.05,
                                    betas=(0.9, 0.999)))
custom_hooks = [dict(type='RandomStateHook')]
