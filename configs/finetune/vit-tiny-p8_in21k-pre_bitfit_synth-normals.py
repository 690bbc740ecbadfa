# (b) Bias tuning (BitFit; Ben Zaken et al., ACL 2022) of the pretrained backbone of recipe (a):
# every backbone weight is frozen except the bias terms (linear and LayerNorm biases, 0.5% of
# the backbone); the new normals head trains whole.
#   python tools/train.py configs/finetune/vit-tiny-p8_in21k-pre_bitfit_synth-normals.py
_base_ = ['./vit-tiny-p8_in21k-pre_synth-normals.py']

optim_wrapper = dict(optimizer=dict(lr=1e-3),
                     paramwise_cfg=dict(frozen=['backbone.*'], trainable=['backbone.*.bias']))
