# MoE ViT-Tiny/8 at 64 px in Mod-Squad's "twice" layout: mixture of attention heads in the even
# blocks (6 query experts, top-3 = heads, one shared key/value head of width 64), MoE MLP in the
# odd blocks (16 experts of hidden 192 = 4D/k, top-4: the active experts cost one dense MLP),
# one router per task, renormalised top-k gates, Mod-Squad's MI loss (w 0.005 per layer).
# A config takes it as `backbone=dict(_delete_=True, tasks=[...], **_base_.moe_vit_tiny_twice)`.
moe_vit_tiny_twice = dict(
    type='MoEViT',
    arch='tiny',
    img_size=64,
    patch_size=8,
    out_indices=(3, 7, 11),
    drop_path_rate=0.1,
    moa_experts=6,
    mlp_experts=16,
    mlp_top_k=4,
    mi_weight=0.005,
)
