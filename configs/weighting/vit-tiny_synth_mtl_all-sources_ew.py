# The quickstart model (four heterogeneous SynthScenes sources, one task each) with one batch
# of every source in each step, so that gradient weightings see every task's gradient:
#   python tools/train.py configs/weighting/vit-tiny_synth_mtl_all-sources_ew.py \
#       --cfg-options optim_wrapper.weighting.type=PCGrad
# batch 8 per source = 32 images per step, as the quickstart's one-source batch of 32.
_base_ = ['../quickstart/vit-tiny_synth_mtl.py']

train_dataloader = dict(batch_size=8, batch_sampler=dict(mode='all_sources'))
optim_wrapper = dict(type='MultiTaskOptimWrapper', weighting=dict(type='EW'))
