# Full-size MoE ViT-B/16 of Mod-Squad (mtvit_taskgate_att_mlp_base_MI_twice, the README
# default): D 768, 12 blocks, 12 heads of width 128; MoA in the even blocks (24 experts,
# top-12), MoE MLP in the odd blocks (16 experts of hidden 768, top-4); raw top-k gates with
# the 1e-4 floor, MI loss w 0.005, task embedding, fc_norm pooling and init as the ViT-S
# config. Backbone parameters, 2 tasks: 200.72 M (200,347,392 shared, the official count,
# + 184,320 router and 768 task-embedding parameters per task). Data and schedule as the
# ViT-S config. Not trained here.
_base_ = ['./moe-vit-s16_modsquad-twice_in1k-ade20k-224px.py']

embed_dim = 768
model = dict(
    backbone=dict(arch='modsquad-base-twice'),
    heads=dict(cls=dict(in_channels=embed_dim), semseg=dict(in_channels=embed_dim)))
