"""Checkpoints that load without running code from the file, and saves that are never half-written.

Importing this module plugs modzoo into mmengine (0.10.7):

* Loading. ``load_from_local`` is registered with mmengine's ``CheckpointLoader`` for local paths,
  and ``load_from_hub`` for ``http(s)://``, ``hf://``, ``timm:`` and ``modzoo://`` names (fetched
  and verified by :mod:`modzoo.hub`), so ``Runner.resume``, ``load_from``,
  ``mmengine.runner.load_checkpoint`` and ``init_cfg=dict(type='Pretrained', ...)`` all go through
  them. ``.safetensors`` files load with safetensors; everything else with
  ``torch.load(weights_only=True)``, which rebuilds tensors and plain containers only. No extra
  globals are allow-listed (see ``MMENGINE_MESSAGE_HUB_GLOBALS``). The ``torchvision://``,
  ``open-mmlab://`` ... schemes are refused: mmengine fetches them with ``weights_only=False``.
* Saving. mmengine writes checkpoints through its ``'local'`` file backend; ``AtomicLocalBackend``
  replaces it, so every local ``put``/``put_text`` goes through ``write_atomic``: a temp file in
  the same directory, fsynced and ``os.replace``d into place. ``SafeCheckpointHook`` (use it in
  place of ``CheckpointHook``) also writes the ``last_checkpoint`` pointer atomically, deletes
  an expired checkpoint only once the new one is on disk, and stores the message hub as plain
  Python types so the file resumes under ``weights_only=True``.
"""
import io
import os
import os.path as osp
import pickle
import uuid

import numpy as np
import safetensors.torch
import torch
from mmengine.dist import barrier, get_dist_info, is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader
from mmengine.utils import apply_to

from modzoo.hub import resolve
from modzoo.registry import HOOKS

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

# Schemes whose mmengine loaders call torch.hub's load_state_dict_from_url(weights_only=False).
_UNSAFE_SCHEMES = ('torchvision://', 'modelzoo://', 'open-mmlab://', 'openmmlab://', 'mmcls://')


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs globals that ``torch.load(weights_only=True)`` refuses to rebuild."""


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


def load_from_hub(source: str, map_location=None):
    """Fetch ``source`` once with :func:`modzoo.hub.resolve` (rank 0 first; cached under
    ``$MODZOO_HOME``, sha256 checked) and load it with :func:`load_from_local`."""
    rank, world_size = get_dist_info()
    if rank == 0:
        path = resolve(source)
    if world_size > 1:
        barrier()
    if rank != 0:
        path = resolve(source, progress=False)  # cached by rank 0
    return load_from_local(path, map_location)


def load_from_unsafe_scheme(filename: str, map_location=None):
    """Refuse ``torchvision://``-style names, which mmengine unpickles with weights_only=False."""
    raise ValueError(f'cannot load {filename!r}: mmengine fetches {filename.split("://")[0]}:// '
                     'checkpoints with weights_only=False, which runs code from the file. '
                     'Pass the https:// URL of the weights or a local file instead.')


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


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder, fsynced and renamed.

    Readers see either the previous file or the complete new one; if anything fails before the
    rename, the previous file is untouched and the temp file is removed.
    """
    path = osp.abspath(path)
    folder = osp.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.{osp.basename(path)}.{uuid.uuid4().hex[:8]}.tmp')
    try:
        with open(tmp, 'xb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    if os.name == 'posix':  # make the rename itself durable
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_checkpoint_atomic(obj, path: str) -> None:
    """Save ``obj`` to ``path`` with :func:`write_atomic`: ``torch.save``, or safetensors for a
    ``.safetensors`` path (``obj`` then a flat ``{name: tensor}`` dict)."""
    if path.endswith('.safetensors'):
        write_atomic(path, safetensors.torch.save(obj))
        return
    with io.BytesIO() as buffer:
        torch.save(obj, buffer)
        write_atomic(path, buffer.getvalue())


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with atomic ``put`` and ``put_text``."""

    def put(self, obj: bytes, filepath) -> None:
        write_atomic(str(filepath), obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose checkpoints resume under ``weights_only=True`` and are never lost
    to an interrupted save. Takes the same arguments.

    Differences from mmengine 0.10.7:

    * the message hub is saved as plain Python types: each ``HistoryBuffer`` as
      ``dict(log_history=[...], count_history=[...], max_length=int)`` and numpy scalars/arrays in
      ``runtime_info`` as Python numbers/lists; ``after_load_checkpoint`` rebuilds the buffers.
    * ``last_checkpoint`` is written atomically, and with ``max_keep_ckpts`` the oldest checkpoint
      is deleted after the new one and the pointer are on disk, not before.
    """

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        hub = checkpoint['message_hub']
        hub['log_scalars'] = type(hub['log_scalars'])(
            (key, dict(log_history=buffer.data[0].tolist(),
                       count_history=buffer.data[1].tolist(),
                       max_length=buffer.max_length))
            for key, buffer in hub['log_scalars'].items())
        hub['runtime_info'] = apply_to(hub['runtime_info'],
                                       lambda x: isinstance(x, (np.generic, np.ndarray)),
                                       lambda x: x.tolist())

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        log_scalars = checkpoint.get('message_hub', {}).get('log_scalars', {})
        for key, state in log_scalars.items():
            if isinstance(state, dict):
                log_scalars[key] = HistoryBuffer(**state)

    def _save_checkpoint_with_step(self, runner, step, meta):
        """mmengine's version with the expired checkpoint deleted last and the pointer written
        atomically."""
        expired = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                expired = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        write_atomic(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt.encode())
        if expired is not None:
            expired_path = self.file_backend.join_path(self.out_dir,
                                                       self.filename_tmpl.format(expired))
            if self.file_backend.isfile(expired_path):
                self.file_backend.remove(expired_path)
            elif self.file_backend.isdir(expired_path):  # deepspeed saves folders
                self.file_backend.rmtree(expired_path)


CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
CheckpointLoader.register_scheme(prefixes=('http://', 'https://', 'hf://', 'timm:',
                                           'modzoo://'), loader=load_from_hub, force=True)
CheckpointLoader.register_scheme(prefixes=_UNSAFE_SCHEMES, loader=load_from_unsafe_scheme,
                                 force=True)
register_backend('local', AtomicLocalBackend, force=True, prefixes='')
