"""Save and restore the random number generators with the checkpoint."""
import logging
import random

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.logging import print_log

from modzoo.registry import HOOKS


def get_random_state():
    """Python, numpy and torch generator states as plain Python types and tensors."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return dict(python=random.getstate(),
                numpy=(kind, keys.tolist(), pos, has_gauss, gauss),
                torch=torch.get_rng_state(),
                cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [])


def set_random_state(state):
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in state['python']))
    kind, keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state['torch'])
    if state['cuda'] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Makes a resumed run draw the same random numbers as an uninterrupted one.

    mmengine re-seeds at start-up and does not checkpoint the generators, so dropout and
    drop-path diverge after ``--resume``. This hook stores the generator states in the
    checkpoint and restores them at the first training iteration after the resume, once the
    loop has advanced the dataloader past the trained iterations. Checkpoints are written by
    rank 0 alone; with mmengine's default ``randomness.diff_rank_seed=False`` every rank is
    seeded alike and draws alike, so rank 0's states are every rank's. With
    ``diff_rank_seed=True`` the other ranks are not restored (a warning says so). Augmentations
    run in dataloader workers, which mmengine seeds per worker, so the data match too; with
    ``num_workers=0`` they draw from the main process generators and the first batch after
    the resume is augmented differently.
    """

    priority = 'VERY_LOW'

    def __init__(self):
        self._pending = None

    def before_save_checkpoint(self, runner, checkpoint):
        checkpoint['random_state'] = get_random_state()

    def after_load_checkpoint(self, runner, checkpoint):
        state = checkpoint.get('random_state')
        if state is None:
            return
        if runner._randomness_cfg.get('diff_rank_seed', False) and get_rank() != 0:
            print_log('RandomStateHook: diff_rank_seed=True, so the generators of rank '
                      f'{get_rank()} are not restored', logger='current', level=logging.WARNING)
            return
        self._pending = state

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self._pending is not None:
            set_random_state(self._pending)
            self._pending = None
