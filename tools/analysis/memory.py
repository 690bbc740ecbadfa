"""Training memory per GPU of a config, before launching it.

    python tools/analysis/memory.py CONFIG [--gpus N] [--strategy ddp|fsdp] [--batch-size B]
                                    [--img-size H [W]] [--activation-checkpointing] [--json]

Per GPU, in GiB: parameters (fp32), gradients (fp32, trainable parameters only), optimizer
state (AdamW/Adam: 2 fp32 tensors per trainable parameter, SGD with momentum: 1) and
activations, the tensors autograd saves for the backward pass at the config's per-GPU
``train_dataloader.batch_size``. DDP keeps all of it on every GPU; FSDP divides parameters,
gradients and optimizer state by N and adds the largest FSDP unit gathered in full, in the
compute dtype (twice: the next unit is prefetched). Activations are measured by running one
forward pass of one image per task on the ``meta`` device (shapes only: no memory, no
compute), or on the CPU for models whose forward reads tensor values (MoE dispatch), and
scaled by the batch; the
largest task counts (a batch holds one task). With activation checkpointing a block keeps
only its input, and one block's activations are alive at a time. With ``--strategy fsdp`` the
config's ``model_wrapper_cfg`` (``mixed_precision.param_dtype``, ``activation_checkpointing``)
is taken into account.
Not counted: the CUDA context and allocator fragmentation (plan ~1-2 GiB), and dataloader
workers.
"""
import argparse
import json
from collections import defaultdict
from contextlib import contextmanager

import torch
from mmengine.config import Config, DictAction
from torch import nn

from modzoo.registry import MODELS

GIB = 2 ** 30
GPU_SIZES_GB = (24, 40, 80)
OPTIMIZER_STATES = {'AdamW': 2, 'Adam': 2, 'TBGNAdamW': 2, 'SGD': 1, 'Lion': 1}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Training memory per GPU of a config')
    parser.add_argument('config')
    parser.add_argument('--gpus', type=int, default=1)
    parser.add_argument('--strategy', choices=['ddp', 'fsdp'], default='ddp')
    parser.add_argument('--batch-size', type=int, help='per GPU (default: the config\'s)')
    parser.add_argument('--img-size', type=int, nargs='+',
                        help='H [W] (default: the backbone img_size)')
    parser.add_argument('--activation-checkpointing', action='store_true')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--json', action='store_true', help='print one JSON line only')
    return parser.parse_args(argv)


def build(cfg, device, dtype=torch.float32):
    with torch.device(device):
        model = MODELS.build(cfg.model)
    return model.to(dtype).train()


@contextmanager
def saved_bytes_by_block(model: nn.Module):
    """Count the bytes autograd saves for backward, split by the ``blocks`` item running.

    Yields ``{block index or None: bytes}`` and ``{block index: bytes of its input}``.
    """
    saved, inputs, current = defaultdict(int), {}, [None]
    blocks = [b for name, m in model.named_modules() if name.split('.')[-1] == 'blocks'
              and isinstance(m, (nn.ModuleList, nn.Sequential)) for b in m]
    seen_storage = set()

    def pack(tensor):
        base = tensor if tensor._base is None else tensor._base  # views share their base
        if base.is_leaf and base.requires_grad:  # a parameter (or a view of one)
            return tensor
        storage = base.untyped_storage()
        key = id(base) if base.device.type == 'meta' else storage.data_ptr()
        if key not in seen_storage:
            seen_storage.add(key)
            saved[current[0]] += storage.nbytes()
        return tensor

    def enter(index):
        def hook(module, args):
            current[0] = index
            x = args[0] if args else None
            if isinstance(x, torch.Tensor):
                inputs[index] = x.numel() * x.element_size()
        return hook

    def leave(module, args, output):
        current[0] = None

    handles = [h for i, b in enumerate(blocks)
               for h in (b.register_forward_pre_hook(enter(i)), b.register_forward_hook(leave))]
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield saved, inputs
    finally:
        for handle in handles:
            handle.remove()


def task_forward(model, images):
    """One training-like forward per task; yields ``(task, run)`` where ``run()`` runs it."""
    if hasattr(model, 'heads'):
        for task, head in model.heads.items():
            def run(task=task, head=head):
                feats = model._task_features(images, (task, ))[0][task]
                try:
                    return head(feats, tuple(images.shape[-2:]))
                except TypeError:  # classification heads take the features only
                    return head(feats)
            yield task, run
    else:
        yield 'model', lambda: model(images, mode='tensor')


def activation_bytes(cfg, size, checkpointing: bool, dtype=torch.float32) -> dict:
    """Saved-for-backward bytes of one image, per task, computing in ``dtype``:
    ``{task: bytes}``."""
    for device in ('meta', 'cpu'):
        model = build(cfg, device, dtype)
        images = torch.rand(1, 3, *size, device=device, dtype=dtype)
        per_task = {}
        try:
            for task, run in task_forward(model, images):
                torch.manual_seed(0)  # the same stochastic-depth draws on every device
                with saved_bytes_by_block(model) as (saved, inputs):
                    run()
                total = sum(saved.values())
                if checkpointing and inputs:
                    blocks = [i for i in saved if i is not None]
                    total = total - sum(saved[i] for i in blocks) + sum(inputs.values()) \
                        + max(saved[i] for i in blocks)
                per_task[task] = total
            return per_task
        except (RuntimeError, NotImplementedError) as error:
            if device == 'cpu':
                raise
            print(f'(meta forward failed: {str(error).splitlines()[0][:80]}; measuring on the CPU)')
    raise AssertionError('unreachable')


def input_size(cfg, img_size):
    if img_size:
        return img_size[0], img_size[-1]
    backbone = cfg.model.get('backbone', {})
    size = backbone.get('img_size') or backbone.get('vit_cfg', {}).get('img_size')
    if size is None:
        raise SystemExit(f'{cfg.filename}: no model.backbone.img_size; pass --img-size H W')
    return (size, size) if isinstance(size, int) else tuple(size)


def estimate(cfg, gpus=1, strategy='ddp', batch_size=None, img_size=None,
             activation_checkpointing=False) -> dict:
    """The per-GPU memory of ``cfg`` in GiB (see the module docstring)."""
    model = build(cfg, 'meta')
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = cfg.optim_wrapper.get('optimizer', {}).get('type', 'AdamW')
    optimizer = getattr(optimizer, '__name__', optimizer)
    states = OPTIMIZER_STATES.get(optimizer, 2)
    if optimizer == 'SGD' and not cfg.optim_wrapper.optimizer.get('momentum'):
        states = 0
    batch = batch_size or cfg.train_dataloader.batch_size
    size = input_size(cfg, img_size)
    compute = ((cfg.get('model_wrapper_cfg') or {}).get('mixed_precision') or {}).get(
        'param_dtype', 'float32') if strategy == 'fsdp' else 'float32'
    per_image = activation_bytes(cfg, size, activation_checkpointing, getattr(torch, compute))
    shard = gpus if strategy == 'fsdp' else 1
    result = dict(config=cfg.filename, gpus=gpus, strategy=strategy, batch_per_gpu=batch,
                  input=list(size), optimizer=optimizer, parameters=params,
                  trainable_parameters=trainable,
                  activation_checkpointing=activation_checkpointing, compute_dtype=compute,
                  params_gib=4 * params / shard / GIB,
                  grads_gib=4 * trainable / shard / GIB,
                  optimizer_gib=4 * states * trainable / shard / GIB,
                  activations_gib=batch * max(per_image.values()) / GIB,
                  activations_task=max(per_image, key=per_image.get))
    if strategy == 'fsdp':
        blocks = [b for name, m in model.named_modules() if name.split('.')[-1] == 'blocks'
                  and isinstance(m, (nn.ModuleList, nn.Sequential)) for b in m]
        largest = max((sum(p.numel() for p in b.parameters()) for b in blocks), default=params)
        result['gathered_units_gib'] = 2 * getattr(torch, compute).itemsize * largest / GIB
    total = sum(v for k, v in result.items() if k.endswith('_gib'))
    result['total_gib'] = total
    result['fits'] = {f'{gb}GB': total * GIB <= gb * 1e9 for gb in GPU_SIZES_GB}
    return result


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.gpus < 1:
        raise SystemExit(f'--gpus must be at least 1, got {args.gpus}')
    checkpointing = args.activation_checkpointing or (
        args.strategy == 'fsdp' and (cfg.get('model_wrapper_cfg') or {}).get(
            'activation_checkpointing', False))
    result = estimate(cfg, args.gpus, args.strategy, args.batch_size, args.img_size,
                      checkpointing)
    if not args.json:
        for key in ('params_gib', 'grads_gib', 'optimizer_gib', 'gathered_units_gib',
                    'activations_gib', 'total_gib'):
            if key in result:
                print(f'{key[:-4]:>16}: {result[key]:8.2f} GiB')
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))
    return result


if __name__ == '__main__':
    main()
