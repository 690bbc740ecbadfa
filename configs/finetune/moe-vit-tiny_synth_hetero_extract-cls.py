# The 'cls' expert sub-network of moe-vit-tiny_synth_hetero.py (Mod-Squad extraction): per MoE
# layer only the experts that classification routes to, with the 'cls' router and head. The
# source config, one task, and the per-layer expert counts read from the extracted checkpoint
# (experts_from), which tools/extract.py writes:
#   python tools/train.py configs/moe_vit/moe-vit-tiny_synth_hetero.py
#   python tools/extract.py configs/moe_vit/moe-vit-tiny_synth_hetero.py \
#       modzoo://moe-vit-tiny_synth_hetero --task cls --usage-rule total \
#       --out work_dirs/moe-vit-tiny_synth_hetero_extract-cls
# Then modzoo://moe-vit-tiny_synth_hetero_extract-cls is the newest checkpoint of that folder:
#   python tools/test.py configs/finetune/moe-vit-tiny_synth_hetero_extract-cls.py \
#       modzoo://moe-vit-tiny_synth_hetero_extract-cls
# Without it, building this config stops with that command.
_base_ = ['../moe_vit/moe-vit-tiny_synth_hetero.py']

sub_network = 'modzoo://moe-vit-tiny_synth_hetero_extract-cls'
model = dict(backbone=dict(tasks=['cls'], experts_from=sub_network),
             heads=dict(_delete_=True, cls={{_base_.model.heads.cls}}))
load_from = sub_network

train_dataloader = dict(dataset=dict(sources=dict(
    _delete_=True, cls={{_base_.train_dataloader.dataset.sources.cls}})))
val_dataloader = dict(dataset=dict(sources=dict(
    _delete_=True, cls={{_base_.val_dataloader.dataset.sources.cls}})))
test_dataloader = val_dataloader
val_evaluator = [dict(type='Accuracy', task='cls', topk=(1, 5))]
test_evaluator = val_evaluator
