# Sharded training (FSDP2, modzoo/engine/fsdp.py): parameters, gradients and optimizer state
# split over the GPUs, bf16 compute with fp32 gradient reduction, activation checkpointing
# per block. Used when launched with torchrun --launcher pytorch; a single process trains
# the plain model. Memory per GPU: python tools/analysis/memory.py CONFIG --gpus N --strategy fsdp
model_wrapper_cfg = dict(type='modzoo.FullyShardedModel',
                         mixed_precision=dict(param_dtype='bfloat16', reduce_dtype='float32'),
                         activation_checkpointing=True)
