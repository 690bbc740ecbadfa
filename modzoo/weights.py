"""Reading weights: the one loader every modzoo path uses (the zoo, ``ViT(pretrained=...)``,
``init_cfg``, the tools and the converters).

* :func:`load_from_local` reads a file without running code from it: ``.safetensors`` with
  safetensors, anything else with ``torch.load(weights_only=True)``, which rebuilds tensors and
  plain containers only. No extra globals are allow-listed (see
  ``MMENGINE_MESSAGE_HUB_GLOBALS``).
* :func:`load_state_dict` resolves a source by the hub's rules (a path, ``https://``, ``hf://``,
  ``timm:``, ``modzoo://`` or a zoo name: :func:`modzoo.hub.resolve`), reads it and unwraps it
  to a flat ``{name: tensor}`` dict: ``state_dict_ema`` / ``model_ema`` (timm's EMA weights,
  preferred as timm does), else ``state_dict`` (mmengine), ``model`` (DeiT, MAE ...) or
  ``module`` (DeepSpeed), with ``module.`` prefixes (DataParallel) dropped.
* :func:`load_weights` loads that dict into a module and reports the keys that do not fit
  (missing, unexpected, wrongly shaped), grouped by module.
"""
import logging
import os.path as osp
import pickle
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import safetensors.torch
import torch
from mmengine.logging import print_log

from modzoo.hub import resolve

# The globals that a checkpoint written by mmengine 0.10.7's own CheckpointHook pickles beyond
# torch's weights-only set (measured: ``pickletools`` on a Runner checkpoint, numpy 2.4). All sit in
# ``checkpoint['message_hub']``; modzoo allow-lists none of them. ``SafeCheckpointHook`` saves that
# state as plain Python types instead; loading a file that still carries them fails with a hint.
MMENGINE_MESSAGE_HUB_GLOBALS = {
    # every log buffer in message_hub['log_scalars'] (train/loss, train/lr, ...)
    'mmengine.logging.history_buffer.HistoryBuffer': 'log buffers (log_scalars)',
    # HistoryBuffer.__getstate__ adds its class-level `statistics_methods`, the functions
    # HistoryBuffer.min/max/mean/current, which pickle as getattr(HistoryBuffer, 'min')
    'builtins.getattr': 'HistoryBuffer.statistics_methods',
    # HistoryBuffer._log_history / _count_history are numpy arrays
    'numpy._core.multiarray._reconstruct': 'numpy arrays in HistoryBuffer',
    'numpy.ndarray': 'numpy arrays in HistoryBuffer',
    'numpy.dtype': 'numpy arrays and scalars',
    # runtime_info['eta'] (IterTimerHook: np.float64); val/<metric> and best_score when a metric
    # returns numpy scalars
    'numpy._core.multiarray.scalar': 'numpy scalars in runtime_info',
    # the same two numpy functions as numpy < 2 spells them
    'numpy.core.multiarray._reconstruct': 'numpy arrays in HistoryBuffer',
    'numpy.core.multiarray.scalar': 'numpy scalars in runtime_info',
}
# Where a whole checkpoint keeps its weights, in the order timm's ``load_state_dict`` looks.
STATE_DICT_KEYS = ('state_dict_ema', 'model_ema', 'state_dict', 'model', 'module')


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs globals that ``torch.load(weights_only=True)`` refuses to rebuild."""


class CheckpointMismatchError(RuntimeError):
    """The keys or shapes of a checkpoint do not fit the model."""


def load_from_local(filename: str, map_location=None):
    """Load a local checkpoint without running code from it.

    Args:
        filename: path to a ``.safetensors`` file or a ``torch.save`` file.
        map_location: as for ``torch.load``; a ``.safetensors`` file needs a device (str or
            ``torch.device``) or None (CPU).

    Returns:
        The saved object: for ``.safetensors`` a flat ``{name: tensor}`` dict.

    Raises:
        FileNotFoundError: ``filename`` is not a file.
        UnsafeCheckpointError: the pickle needs globals beyond tensors and plain containers; the
            message names the file and every refused global.
        RuntimeError: the file is not a readable checkpoint (or needs a ``map_location``).
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file {filename!r} does not exist')
    if filename.endswith('.safetensors'):
        return _load_safetensors(filename, map_location)
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(_refusal_message(filename, error)) from error
    except (RuntimeError, EOFError) as error:
        raise RuntimeError(f'cannot load checkpoint {filename!r}: {error}') from error


def unwrap(checkpoint, source: str = 'checkpoint') -> Dict[str, torch.Tensor]:
    """The flat state dict inside a loaded ``checkpoint`` (see the module docstring)."""
    if isinstance(checkpoint, dict):
        for key in STATE_DICT_KEYS:
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, dict) or not all(
            isinstance(value, torch.Tensor) for value in checkpoint.values()):
        raise ValueError(f'{source} holds no state dict: expected {{name: tensor}}, alone or '
                         f'under one of {list(STATE_DICT_KEYS)}')
    return {key[len('module.'):] if key.startswith('module.') else key: value
            for key, value in checkpoint.items()}


def load_state_dict(source: str, sha256: Optional[str] = None,
                    map_location='cpu') -> Dict[str, torch.Tensor]:
    """The flat ``{name: tensor}`` weights of ``source`` (any source :func:`resolve` takes),
    fetched and sha256-checked as the hub does, read weights-only and unwrapped."""
    return unwrap(load_from_local(resolve(source, sha256), map_location), source)


@dataclass
class WeightsReport:
    """What of a checkpoint did not fit a model; ``str()`` lists it grouped by module."""
    missing: List[str] = field(default_factory=list)      # in the model, not the checkpoint
    unexpected: List[str] = field(default_factory=list)   # in the checkpoint, not the model
    mismatched: List[str] = field(default_factory=list)   # 'key (ckpt shape) vs model (shape)'

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        sections = [('missing keys (in the model, not in the checkpoint)', self.missing),
                    ('unexpected keys (in the checkpoint, not in the model)', self.unexpected),
                    ('shape mismatches', self.mismatched)]
        return '\n'.join(f'{title}:\n' + group_by_module(keys)
                         for title, keys in sections if keys)


def load_weights(model: torch.nn.Module, source: str, strict: bool = True,
                 sha256: Optional[str] = None, prefix: Optional[str] = None,
                 convert: Optional[Callable[[dict], dict]] = None,
                 allow_unexpected: bool = False) -> WeightsReport:
    """Load the weights of ``source`` (:func:`load_state_dict`) into ``model``.

    Args:
        model: the module to fill.
        source: a path, URL, ``hf://``, ``timm:``, ``modzoo://`` or zoo name.
        strict: raise :class:`CheckpointMismatchError` when keys do not fit; with False the
            report is logged and everything that fits loads.
        sha256: the expected hash of the file (a hex prefix of 8+ digits).
        prefix: load only the keys under ``prefix`` (e.g. ``'backbone.'``), stripped of it.
        convert: maps the state dict to the model's names and shapes (e.g. timm's
            ``checkpoint_filter_fn``) before it is compared with the model.
        allow_unexpected: with ``strict``, keys the model does not have are logged, not raised.

    Returns:
        The :class:`WeightsReport` (empty when everything fit). When it raises, the keys that
        fit may have been loaded already.
    """
    state = load_state_dict(source, sha256)
    where = f'checkpoint {source}'
    if prefix:
        state = {key[len(prefix):]: value for key, value in state.items()
                 if key.startswith(prefix)}
        if not state:
            raise CheckpointMismatchError(f"{where} has no key starting with prefix '{prefix}'")
    if convert is not None:
        try:
            state = convert(state)
        except (RuntimeError, ValueError, KeyError) as error:
            raise CheckpointMismatchError(f'{where} does not fit {type(model).__name__}: '
                                          f'{error}') from error
    report = _load_and_report(model, state)
    if report:
        message = f'{where} does not fit {type(model).__name__}:\n{report}'
        fatal = report.missing or report.mismatched or not allow_unexpected
        if strict and fatal:
            raise CheckpointMismatchError(message + '\nPass strict=False to load what fits.')
        print_log(message, logger='current', level=logging.WARNING)
    return report


def _load_and_report(model: torch.nn.Module, state: dict) -> WeightsReport:
    """``model.load_state_dict(state, strict=False)``, so the modules' own load hooks run (a
    bias table filled from a shared bias, a resampled table); keys whose shapes still differ
    are left out and reported, everything else is loaded."""
    own = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    mismatched = []
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # torch loads everything else, then names each mismatch
        mismatched = [key for key in state if f'size mismatch for {key}:' in str(error)]
        if not mismatched:
            raise
        result = model.load_state_dict({key: value for key, value in state.items()
                                        if key not in mismatched}, strict=False)
    return WeightsReport(
        missing=[key for key in result.missing_keys if key not in mismatched],
        unexpected=list(result.unexpected_keys),
        mismatched=[f'{key} {tuple(state[key].shape)} vs model {own.get(key)}'
                    for key in mismatched])


def group_by_module(keys: List[str], shown: int = 6) -> str:
    """One line per module (first two name components); block indices become ``#``:
    ``  backbone.blocks: #.attn.qkv.bias (x12), #.attn.qkv.weight (x12), ...``."""
    groups = defaultdict(lambda: defaultdict(int))
    for key in keys:
        parts = key.split('.')
        split = 2 if len(parts) > 2 else 1
        module, rest = '.'.join(parts[:split]), parts[split:]
        pattern = '.'.join('#' if part.isdigit() else part for part in rest) or '(itself)'
        groups[module][pattern] += 1
    lines = []
    for module, patterns in groups.items():
        items = [p if n == 1 else f'{p} (x{n})' for p, n in patterns.items()]
        more = f', ... (+{len(items) - shown} more)' if len(items) > shown else ''
        lines.append(f'  {module}: {", ".join(items[:shown])}{more}')
    return '\n'.join(lines)


def _load_safetensors(filename: str, map_location):
    device = 'cpu' if map_location is None else map_location
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f'map_location for the safetensors file {filename!r} must be a device '
                        f'(str or torch.device) or None, got {map_location!r}')
    try:
        return safetensors.torch.load_file(filename, device=str(device))
    except safetensors.SafetensorError as error:
        raise RuntimeError(f'{filename!r} is not a readable safetensors file: {error}') from error


def _refusal_message(filename: str, error: pickle.UnpicklingError) -> str:
    try:
        refused = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(filename))
    except ValueError:  # not a zip checkpoint: only torch's own message names the global
        refused = []
    if not refused:  # torch's message: advice, then 'WeightsUnpickler error: <what failed>'
        detail = str(error).split('WeightsUnpickler error:')[-1].strip().splitlines()[0]
        return f'refused to load {filename!r}: torch.load(weights_only=True) failed: {detail}'
    named = [f'{name} ({MMENGINE_MESSAGE_HUB_GLOBALS[name]})'
             if name in MMENGINE_MESSAGE_HUB_GLOBALS else name for name in refused]
    message = (f'refused to load {filename!r}: it pickles {", ".join(named)}, which '
               'torch.load(weights_only=True) does not rebuild (doing so could run code from the '
               'file). modzoo loads tensors, plain Python containers and .safetensors files only.')
    if set(refused) <= set(MMENGINE_MESSAGE_HUB_GLOBALS):
        message += (' These come from the message hub that mmengine\'s CheckpointHook saves; '
                    'modzoo\'s SafeCheckpointHook saves it as plain types. If the file is yours, '
                    're-save its weights once in a trusted session: load it with '
                    'weights_only=False and torch.save only its "state_dict".')
    return message
