# taskexpert_vit-l16_pascal-context-512x512.py with FSDP2 (bf16 compute, fp32 reduction,
# activation checkpointing), for torchrun with --launcher pytorch.
_base_ = ['./taskexpert_vit-l16_pascal-context-512x512.py', '../_base_/strategies/fsdp_bf16.py']
