# TaskExpert-tiny on SynthScenes in the NYUD-v2 layout (one source labels all four tasks),
# trained through MultiTaskOptimWrapper. EW here; any other weighting by name:
#   python tools/train.py configs/weighting/taskexpert_vit-tiny-p8_synth-nyud_ew.py \
#       --cfg-options optim_wrapper.weighting.type=PCGrad
# The loss weights of the base config (1 / 1 / 10 / 50) scale the task losses first.
_base_ = ['../taskexpert/taskexpert_vit-tiny-p8_synth-nyud.py']

optim_wrapper = dict(type='MultiTaskOptimWrapper', weighting=dict(type='EW'))
