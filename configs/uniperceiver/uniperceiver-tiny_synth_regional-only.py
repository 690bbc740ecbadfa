# Ablation (paper Tab. 2 'Regional only'): each image is only its region tokens, one per
# class-agnostic proposal; classification and retrieval read the <SPE> output over them.
_base_ = ['./uniperceiver-tiny_synth.py']

model = dict(global_tokens=None)
