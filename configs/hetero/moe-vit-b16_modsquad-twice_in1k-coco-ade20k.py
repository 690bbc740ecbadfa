# The heterogeneous recipe with Mod-Squad's MoE ViT-B/16 "twice" preset (D 768, MoA 24
# experts top-12 in the even blocks, MoE MLP 16 experts top-4 in the odd blocks); data,
# detector, sampling and schedule as the ViT-S/16 config (assumed values listed there).
# Not trained here.
_base_ = ['./moe-vit-s16_modsquad-twice_in1k-coco-ade20k.py']

embed_dim = 768
model = dict(
    backbone=dict(arch='modsquad-base-twice'),
    heads=dict(cls=dict(in_channels=embed_dim), det=dict(in_channels=embed_dim),
               semseg=dict(in_channels=embed_dim)))
