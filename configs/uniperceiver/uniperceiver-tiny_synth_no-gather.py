# Ablation (paper Tab. 4 'Unmixed' against '+ feature gather'): retrieval's negatives are this
# rank's batch only. Feature gathering changes nothing in one process; compare on 2 ranks:
#   torchrun --nproc_per_node=2 tools/train.py CONFIG --launcher pytorch \
#       --cfg-options train_dataloader.batch_size=8      # 2 x 8: the tiny config's batch 16
# with this config and with uniperceiver-tiny_synth_no-tbgn.py (gathering, same optimizer).
_base_ = ['./uniperceiver-tiny_synth_no-tbgn.py']

model = dict(heads=dict(retrieval=dict(gather=False)))
