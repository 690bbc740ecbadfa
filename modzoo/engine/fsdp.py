"""Sharded data-parallel training with PyTorch FSDP2 (``torch.distributed.fsdp.fully_shard``).

Select it with ``tools/train.py CONFIG --launcher pytorch --strategy fsdp`` or in a config::

    model_wrapper_cfg = dict(type='modzoo.FullyShardedModel',
                             mixed_precision=dict(param_dtype='bfloat16'),
                             activation_checkpointing=True)

Every block of every ``blocks`` ModuleList or Sequential (the ViT blocks of ``ViT``,
``MoEViT`` and the prompted ViTs) is its own FSDP unit, then the whole model: each rank keeps
1/N of every parameter, gradient and optimizer state, and a block's parameters are gathered
only while it runs. Works with gloo on the CPU and NCCL on GPUs.

Checkpoints stay ordinary modzoo checkpoints: when ``SafeCheckpointHook`` saves, every rank
takes part in gathering the full model and optimizer state and rank 0 writes them, in the
layout of an unsharded run. They load anywhere (``tools/test.py``, ``tools/infer.py``, a DDP
run), and ``--resume`` loads them into the plain model, which is sharded again at the first
training step, so a resumed run continues bit-exactly.
"""
from collections import defaultdict
from typing import Optional, Sequence

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.utils.checkpoint import checkpoint

from modzoo.models.layers.moe_router import record_once
from modzoo.registry import MODEL_WRAPPERS


def fsdp_wrapper_cfg(**kwargs) -> dict:
    """The ``model_wrapper_cfg`` of :class:`FullyShardedModel` (scoped: the Runner looks it
    up in mmengine's root registry)."""
    return dict(type='modzoo.FullyShardedModel', **kwargs)


def _dtype(name: Optional[str]) -> Optional[torch.dtype]:
    if name is None:
        return None
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"FullyShardedModel mixed_precision: '{name}' is not a torch dtype "
                         "(use 'bfloat16', 'float16' or 'float32')")
    return dtype


@MODEL_WRAPPERS.register_module()
class FullyShardedModel(nn.Module):
    """Shards ``module`` with FSDP2 and runs its ``train_step``/``val_step``/``test_step``.

    The model is sharded at the first ``train_step``, after mmengine has initialised (and
    broadcast), loaded or resumed it as the plain model it built: the optimizer's parameters
    are then swapped for the sharded ones, and optimizer state already loaded is sharded
    with them.

    Args:
        module: the model (a mmengine ``BaseModel``), on the device it trains on.
        block_lists: names of the ``nn.ModuleList`` / ``nn.Sequential`` modules whose items
            each become an FSDP unit (default: ``blocks``).
        mixed_precision: ``dict(param_dtype=..., reduce_dtype=...)`` (dtype names): compute
            with parameters gathered in ``param_dtype``, reduce gradients in ``reduce_dtype``;
            the sharded parameters and the optimizer stay fp32. None: fp32 throughout.
        activation_checkpointing: recompute each block's activations in the backward pass
            instead of keeping them. The forward pass then runs twice per block; MoE expert
            usage counts and the MI loss running estimate are recorded in the first run only.
        reshard_after_forward: free the gathered parameters after each unit's forward (ZeRO-3;
            False keeps them until the backward pass, ZeRO-2).
    """

    def __init__(self, module: nn.Module, block_lists: Sequence[str] = ('blocks', ),
                 mixed_precision: Optional[dict] = None, activation_checkpointing: bool = False,
                 reshard_after_forward: bool = True):
        super().__init__()
        if not torch.distributed.is_initialized():
            raise RuntimeError('FullyShardedModel needs a process group: start with torchrun '
                               'and --launcher pytorch')
        precision = dict(mixed_precision or {})
        unknown = set(precision) - {'param_dtype', 'reduce_dtype'}
        if unknown:
            raise KeyError(f'FullyShardedModel mixed_precision takes param_dtype and '
                           f'reduce_dtype, got {sorted(unknown)}')
        self.mp_policy = MixedPrecisionPolicy(**{k: _dtype(v) for k, v in precision.items()})
        self.blocks = [block for name, child in module.named_modules()
                       if name.split('.')[-1] in block_lists
                       and isinstance(child, (nn.ModuleList, nn.Sequential))
                       for block in child]
        if not self.blocks:
            raise ValueError(f'FullyShardedModel found no ModuleList or Sequential named '
                             f'{list(block_lists)} in {type(module).__name__}: set block_lists')
        self.activation_checkpointing = activation_checkpointing
        self.reshard_after_forward = reshard_after_forward
        self.module = module
        self.sharded = False

    def shard(self, optimizer: torch.optim.Optimizer) -> None:
        """Shard every block, then the whole model; point ``optimizer`` at the sharded
        parameters and shard its state (the same on every rank, as loaded) with them."""
        names = {param: name for name, param in self.module.named_parameters()}
        device = next(self.module.parameters()).device
        mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(), ))
        for block in self.blocks + [self.module]:
            if self.activation_checkpointing and block is not self.module:
                block.forward = _checkpointed(block.forward)
            fully_shard(block, mesh=mesh, mp_policy=self.mp_policy,
                        reshard_after_forward=self.reshard_after_forward)
        sharded = dict(self.module.named_parameters())
        for group in optimizer.param_groups:
            group['params'] = [sharded[names[param]] for param in group['params']]
        optimizer.state = defaultdict(dict, {
            sharded[names[param]]: {key: _shard_like(value, sharded[names[param]])
                                    for key, value in state.items()}
            for param, state in optimizer.state.items()})
        self.sharded = True

    def train_step(self, data, optim_wrapper):
        """``BaseModel.train_step`` on the model, sharded at the first call."""
        if not self.sharded:
            self.shard(optim_wrapper.optimizer)
        return self.module.train_step(data, optim_wrapper)

    def val_step(self, data):
        return self.module.val_step(data)

    def test_step(self, data):
        return self.module.test_step(data)

    def gather_for_checkpoint(self, optimizer: Optional[torch.optim.Optimizer]) -> None:
        """Collective (every rank calls it before rank 0 saves): gather the full model (and
        ``optimizer``) state; the next ``state_dict()`` of the module and of the optimizer on
        rank 0 return it, in the layout of an unsharded run."""
        if not self.sharded:
            return
        model_state = {k: _full(v) for k, v in self.module.state_dict().items()}
        optim_state = None if optimizer is None else optimizer.state_dict()
        if optim_state is not None:
            optim_state['state'] = {index: {k: _full(v) for k, v in state.items()}
                                    for index, state in optim_state['state'].items()}
        if torch.distributed.get_rank() != 0:
            return

        def use_model_state(module, state_dict, prefix, local_metadata):
            state_dict.clear()
            state_dict.update(model_state)
            model_hook.remove()

        def use_optim_state(opt, state_dict):
            optim_hook.remove()
            return optim_state

        model_hook = self.module.register_state_dict_post_hook(use_model_state)
        if optimizer is not None:
            optim_hook = optimizer.register_state_dict_post_hook(use_optim_state)


def _checkpointed(forward):
    """``forward`` whose activations are recomputed in the backward pass; MoE layers record
    their statistics in the first run only (``record_once``)."""
    def run(*args, **kwargs):
        return checkpoint(record_once(forward), *args, use_reentrant=False, **kwargs)
    return run


def _full(value):
    """A DTensor gathered to a CPU tensor (collective); anything else as it is."""
    return value.full_tensor().cpu() if isinstance(value, DTensor) else value


def _shard_like(value, param):
    """Optimizer state ``value`` of the unsharded ``param`` as a DTensor laid out as ``param``
    (scalars such as Adam's ``step`` stay as they are)."""
    if isinstance(value, torch.Tensor) and value.shape == param.shape:
        return distribute_tensor(value.to(param.device), param.device_mesh, param.placements)
    return value
