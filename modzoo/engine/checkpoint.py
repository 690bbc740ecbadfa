"""Checkpoints that load without running code from the file, and saves that are never half-written.

Importing this module changes nothing in mmengine that other code relies on: it only adds the
schemes mmengine does not know, ``hf://``, ``timm:`` and ``modzoo://`` (:func:`load_from_hub`),
so ``init_cfg=dict(type='Pretrained', checkpoint='timm:...')`` works in any Runner. The rest is
an explicit step, :func:`use_safe_checkpoints`, that modzoo's tools take before they build a
Runner and that ``SafeCheckpointHook.before_run`` takes (before the Runner initialises weights,
loads or resumes):

* Loading. Local paths and ``http(s)://`` load with :func:`modzoo.weights.load_from_local`
  (safetensors, or ``torch.load(weights_only=True)``), so ``Runner.resume``, ``load_from``,
  ``mmengine.runner.load_checkpoint`` and ``init_cfg`` all read weights only. The
  ``torchvision://``, ``open-mmlab://`` ... schemes are refused: mmengine fetches them with
  ``weights_only=False``; so is any other unknown scheme (``ftp://``, ``htps://``), naming the
  supported ones.
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

from modzoo.hub import check_scheme, resolve
from modzoo.registry import HOOKS
from modzoo.weights import (MMENGINE_MESSAGE_HUB_GLOBALS, UnsafeCheckpointError,  # noqa: F401
                            load_from_local)

# Schemes whose mmengine loaders call torch.hub's load_state_dict_from_url(weights_only=False).
UNSAFE_SCHEMES = ('torchvision://', 'modelzoo://', 'open-mmlab://', 'openmmlab://', 'mmcls://')
# Schemes only modzoo reads: registered on import, where no one else has registered them.
MODZOO_SCHEMES = ('hf://', 'timm:', 'modzoo://')


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


def load_from_path(filename: str, map_location=None):
    """mmengine's fallback loader: a local file (:func:`load_from_local`); a URL of a scheme
    nobody registered (``ftp://``, a typo such as ``htps://``) is refused by name."""
    check_scheme(filename)
    return load_from_local(filename, map_location)


def load_from_unsafe_scheme(filename: str, map_location=None):
    """Refuse ``torchvision://``-style names, which mmengine unpickles with weights_only=False."""
    raise ValueError(f'cannot load {filename!r}: mmengine fetches {filename.split("://")[0]}:// '
                     'checkpoints with weights_only=False, which runs code from the file. '
                     'Pass the https:// URL of the weights or a local file instead.')


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

    * ``before_run`` calls :func:`use_safe_checkpoints`, so the run reads checkpoints
      weights-only and writes files atomically.
    * the message hub is saved as plain Python types: each ``HistoryBuffer`` as
      ``dict(log_history=[...], count_history=[...], max_length=int)`` and numpy scalars/arrays in
      ``runtime_info`` as Python numbers/lists; ``after_load_checkpoint`` rebuilds the buffers.
    * ``last_checkpoint`` is written atomically, and with ``max_keep_ckpts`` the oldest checkpoint
      is deleted after the new one and the pointer are on disk, not before.
    * a sharded model (``FullyShardedModel``) is gathered by every rank before rank 0 saves
      (``modzoo/engine/fsdp.py``).
    """

    def before_run(self, runner) -> None:
        use_safe_checkpoints()  # before the Runner initialises weights, loads or resumes
        super().before_run(runner)

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
        gather = getattr(runner.model, 'gather_for_checkpoint', None)  # FullyShardedModel
        if gather is not None:
            gather(runner.optim_wrapper.optimizer if self.save_optimizer else None)
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


def use_safe_checkpoints() -> None:
    """Make every checkpoint mmengine reads in this process weights-only, and every local file
    it writes atomic (see the module docstring). Idempotent; modzoo's tools call it, and
    ``SafeCheckpointHook`` does before each run."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_path, force=True)
    CheckpointLoader.register_scheme(prefixes=('http://', 'https://') + MODZOO_SCHEMES,
                                     loader=load_from_hub, force=True)
    CheckpointLoader.register_scheme(prefixes=UNSAFE_SCHEMES, loader=load_from_unsafe_scheme,
                                     force=True)
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')


def _register_modzoo_schemes() -> None:
    """Add ``hf://``, ``timm:`` and ``modzoo://`` to mmengine's loaders, overriding no one."""
    for prefix in MODZOO_SCHEMES:
        try:
            CheckpointLoader.register_scheme(prefixes=prefix, loader=load_from_hub)
        except KeyError:  # registered by someone else: theirs stays
            pass


_register_modzoo_schemes()
