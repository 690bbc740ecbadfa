# Ablation (paper Tab. 4 'Unmixed + feature gather', without TBGN): unmixed sampling with
# plain AdamW at the tiny config's learning rate.
_base_ = ['./uniperceiver-tiny_synth.py']

optim_wrapper = dict(optimizer=dict(type='AdamW'))
custom_hooks = [dict(type='RandomStateHook')]
