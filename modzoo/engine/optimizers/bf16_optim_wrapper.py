"""bf16 mixed precision on any device that has it, the CPU included (``tools/train.py --amp``).

mmengine 0.10.7's ``AmpOptimWrapper`` asserts a GPU (NPU, MLU, MUSA) and always scales the
loss, which bf16 does not need: its exponent range is fp32's. :class:`BF16OptimWrapper` runs
the model's forward and its losses under ``torch.autocast(<device of the parameters>,
torch.bfloat16)``; parameters, gradients and optimizer state stay fp32, backward and step are
the plain ``OptimWrapper``'s. :func:`amp_optim_wrapper` picks what ``--amp`` uses on a device:
this wrapper where bf16 runs natively, mmengine's ``AmpOptimWrapper`` in fp16 with dynamic loss
scaling on a CUDA device without bf16, and a clear error on a CPU without bf16 kernels.
"""
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper
from torch import nn

from modzoo.registry import OPTIM_WRAPPERS


def cpu_supports_bf16() -> bool:
    """Whether oneDNN has bf16 kernels for this CPU (x86 AVX-512 BW/VL/DQ, or Arm BF16).

    Elsewhere torch still runs bf16 on the CPU, but through slow reference loops: a mixed
    precision step would be slower than fp32. This is the check torch's own bf16 CPU paths use.
    """
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def bf16_support(device_type: str) -> str:
    """'' if ``device_type`` ('cpu', 'cuda') runs bf16 autocast natively, else why not."""
    if device_type == 'cuda':
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return ''
        return f'the CUDA device {torch.cuda.get_device_name()} has no native bf16'
    if device_type == 'cpu':
        if cpu_supports_bf16():
            return ''
        return ('this CPU has no bf16 support (oneDNN needs AVX-512 BW/VL/DQ on x86, BF16 on '
                f'Arm; torch reports the CPU capability as '
                f'{torch.backends.cpu.get_cpu_capability()}), so bf16 would run through slow '
                'reference kernels; train in fp32 (without --amp)')
    return f'bf16 autocast is not set up for device type {device_type!r}'


@OPTIM_WRAPPERS.register_module()
class BF16OptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose ``optim_context`` runs under bf16 autocast, without loss scaling.

    The autocast device is the device of the optimizer's parameters (CPU or CUDA). Building
    the wrapper fails with a message where that device has no native bf16 (see
    :func:`bf16_support`). Other arguments are ``OptimWrapper``'s (``accumulative_counts``,
    ``clip_grad``); checkpoints hold the same state as ``OptimWrapper``'s, so a run resumes
    with or without ``--amp``.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        params = [p for group in self.optimizer.param_groups for p in group['params']]
        self.device_type = params[0].device.type if params else 'cpu'
        reason = bf16_support(self.device_type)
        if reason:
            raise RuntimeError(f'{type(self).__name__}: cannot train in bf16: {reason}')

    @contextmanager
    def optim_context(self, model: nn.Module):
        """The parent's context (gradient accumulation) with bf16 autocast on."""
        with super().optim_context(model), torch.autocast(self.device_type, torch.bfloat16):
            yield


def amp_optim_wrapper(optim_wrapper: dict, device_type: str) -> dict:
    """The config of ``optim_wrapper`` (a plain ``OptimWrapper``) turned to mixed precision.

    bf16 (:class:`BF16OptimWrapper`) where ``device_type`` has it; on a CUDA device without
    bf16, mmengine's ``AmpOptimWrapper`` with fp16 and dynamic loss scaling. A
    ``MultiTaskOptimWrapper`` becomes ``BF16MultiTaskOptimWrapper`` (bf16 only). Raises
    ``ValueError`` on a CPU without bf16 and for a wrapper type other than these two (its own
    mixed precision settings are then the config's to give).
    """
    wrapper_type = optim_wrapper.get('type', 'OptimWrapper')
    if wrapper_type in ('BF16OptimWrapper', 'AmpOptimWrapper', 'BF16MultiTaskOptimWrapper'):
        return optim_wrapper
    if wrapper_type == 'MultiTaskOptimWrapper':
        reason = bf16_support(device_type)
        if reason:
            raise ValueError(f'--amp with MultiTaskOptimWrapper needs bf16 (fp16 loss scaling '
                             f'does not compose with its per-task backward passes): {reason}')
        return dict(optim_wrapper, type='BF16MultiTaskOptimWrapper')
    if wrapper_type != 'OptimWrapper':
        raise ValueError(f"--amp replaces optim_wrapper.type 'OptimWrapper' or "
                         f"'MultiTaskOptimWrapper' by a mixed precision wrapper; this config "
                         f'uses {wrapper_type!r}: set its mixed precision in the config instead')
    reason = bf16_support(device_type)
    if not reason:
        return dict(optim_wrapper, type='BF16OptimWrapper')
    if device_type == 'cuda':
        return dict(optim_wrapper, type='AmpOptimWrapper', dtype='float16',
                    loss_scale=optim_wrapper.get('loss_scale', 'dynamic'))
    raise ValueError(f'--amp: {reason}')


def use_amp(cfg, config_path: str) -> None:
    """``--amp`` of the tools: ``cfg.optim_wrapper`` becomes :func:`amp_optim_wrapper`'s for
    this machine's device; a combination it refuses stops the tool, naming ``config_path``."""
    from mmengine.device import get_device
    try:
        cfg.optim_wrapper = amp_optim_wrapper(cfg.optim_wrapper, get_device())
    except ValueError as error:
        raise SystemExit(f'{config_path}: {error}') from None
