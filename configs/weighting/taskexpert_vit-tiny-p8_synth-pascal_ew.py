# TaskExpert-tiny on SynthScenes in the PASCAL-Context layout (one source labels all five
# tasks), trained through MultiTaskOptimWrapper; pick the weighting with
#   --cfg-options optim_wrapper.weighting.type=CAGrad
_base_ = ['../taskexpert/taskexpert_vit-tiny-p8_synth-pascal.py']

optim_wrapper = dict(type='MultiTaskOptimWrapper', weighting=dict(type='EW'))
