# moe-vit-b16_modsquad-twice_in1k-ade20k-224px.py with FSDP2 (bf16 compute, fp32 reduction,
# activation checkpointing), for torchrun with --launcher pytorch.
_base_ = ['./moe-vit-b16_modsquad-twice_in1k-ade20k-224px.py', '../_base_/strategies/fsdp_bf16.py']
