# chameleon-tiny_synth-episodes.py with a mixture-of-experts image encoder: a 4-block MoEViT
# (width 96, patch 8) in Mod-Squad's "twice" layout (MoA of 6 query experts in blocks 0 and
# 2, an MoE MLP of 4 experts, top-2, in blocks 1 and 3) with one task per sub-task: each
# sample is routed by its label channel's router and biased by its bias set, and the
# mutual-information loss (weight 0.005) joins the episode losses.
_base_ = ['./chameleon-tiny_synth-episodes.py']

model = dict(
    image_encoder=dict(
        _delete_=True, type='MoEViT', arch=dict(embed_dim=96, depth=4, num_heads=3),
        img_size={{_base_.size}}, patch_size=8, out_indices=[0, 1, 2, 3], final_norm=False,
        moa_experts=6, mlp_experts=4, mlp_top_k=2, mi_weight=0.005))
