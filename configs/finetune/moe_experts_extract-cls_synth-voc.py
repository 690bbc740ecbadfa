# (b) Fine-tune the chosen experts of an extracted sub-network on a new task: the experts
# that 'cls' kept at extraction (every MoA query/output expert and MoE-MLP expert of the
# sub-network), the routers and the new head train; the patch and position embeddings, the
# shared key/value heads, the dense attention and MLPs and the LayerNorms stay frozen.
# Choose other experts with paramwise_cfg.trainable, e.g. 'backbone.blocks.11.mlp.fc*'.
# Same sub-network, data and schedule as recipe (a); make the sub-network as described there:
#   python tools/train.py configs/finetune/moe_experts_extract-cls_synth-voc.py
_base_ = ['./moe_routers-head_extract-cls_synth-voc.py']

optim_wrapper = dict(paramwise_cfg=dict(trainable=[
    'backbone.*.fc1_*', 'backbone.*.fc2_*', 'backbone.*.q_weight', 'backbone.*.out_weight',
    'backbone.*.router.weight', 'heads.*'
]))
