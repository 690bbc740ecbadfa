# uniperceiver-v2-large_swin-l_roberta-base.py with FSDP2 (bf16 compute, fp32 reduction,
# activation checkpointing), for torchrun with --launcher pytorch.
_base_ = ['./uniperceiver-v2-large_swin-l_roberta-base.py', '../_base_/strategies/fsdp_bf16.py']
