# Ablation (paper Tab. 4 'Unmixed + feature gather', without TBGN): unmixed sampling with
# plain AdamW.
_base_ = ['./uniperceiver-tiny_synth.py']

optim_wrapper = dict(optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=0.05,
                                    betas=(0.9, 0.999)))
custom_hooks = [dict(type='RandomStateHook')]
