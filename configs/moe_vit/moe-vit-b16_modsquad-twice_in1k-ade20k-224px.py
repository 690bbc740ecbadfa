# Full-size MoE ViT-B/16 of Mod-Squad (mtvit_taskgate_att_mlp_base_MI_twice, the README
# default): D 768, 12 blocks, 12 heads of width 128; MoA in the even blocks (24 experts,
# top-12), MoE MLP in the odd blocks (16 experts of hidden 768, top-4); raw top-k gates, MI
# loss w 0.005. Backbone parameters, 2 tasks: 200.71 M (200,345,856 shared + 184,320 router
# per task), the official count less its fc_norm. Data and schedule as the ViT-S config.
# Not trained here.
_base_ = ['./moe-vit-s16_modsquad-twice_in1k-ade20k-224px.py']

embed_dim = 768
model = dict(
    backbone=dict(arch='modsquad-base-twice'),
    heads=dict(cls=dict(in_channels=embed_dim), semseg=dict(in_channels=embed_dim)))
