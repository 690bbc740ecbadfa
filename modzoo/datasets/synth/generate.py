"""Render a pool of SynthScenes and write it in every dataset format, atomically.

Scene ``i`` (0-based, train scenes first, then val) has the id ``f'{i + 1:06d}'`` in every
format and is drawn from ``np.random.default_rng([seed, i])`` alone, so the output does not
depend on the number of workers or the order they finish in.
"""
import multiprocessing
import os
import os.path as osp
import secrets
import shutil

import numpy as np
from tqdm import tqdm

from .render import render
from .scene import sample_scene
from .writers import make_dirs, write_indexes, write_scene

MIN_VISIBLE = 0.004    # an object keeps its place only if it covers this image fraction


def make_scene(seed, index, size):
    """(Scene, Rendering) of scene ``index``; objects hidden behind others are left out."""
    rng = np.random.default_rng([seed, index])
    min_pixels = max(4, round(MIN_VISIBLE * size * size))
    while True:
        scene = sample_scene(rng, size)
        rendering = render(scene)
        pixels = np.bincount(rendering.instance.ravel(), minlength=len(scene.objects) + 1)[1:]
        hidden = np.flatnonzero(pixels < min_pixels)
        if len(hidden):
            scene = scene.without(hidden)
            rendering = render(scene)
        if scene.objects:
            return scene, rendering


def _write_one(job):
    root, split, index, seed, size = job
    scene, rendering = make_scene(seed, index, size)
    return write_scene(root, split, f'{index + 1:06d}', scene, rendering)


def _check_count(name, value, minimum):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f'generate_synth_scenes: {name} must be an integer >= {minimum}, '
                         f'got {value!r}')


def generate_synth_scenes(out, num_train=2000, num_val=400, size=64, seed=0, workers=None,
                          progress=True, overwrite=False):
    """Render ``num_train + num_val`` scenes of ``size`` px and write every format to ``out``.

    Files are written into ``<out>.tmp-<random>`` which is renamed to ``out`` at the end, so
    an existing ``out`` is always complete. ``out`` may be missing or an empty folder; a
    non-empty one is replaced only with ``overwrite`` (after the new set is complete).
    ``workers``: processes (default: all CPUs; 0 or 1 renders in this process). Returns ``out``.
    """
    _check_count('num_train', num_train, 0)
    _check_count('num_val', num_val, 0)
    _check_count('size', size, 16)
    _check_count('seed', seed, 0)
    workers = os.cpu_count() if workers is None else workers
    _check_count('workers', workers, 0)
    if num_train + num_val == 0:
        raise ValueError('generate_synth_scenes: num_train + num_val must be at least 1')
    out = osp.abspath(out)
    replace = osp.exists(out) and not (osp.isdir(out) and not os.listdir(out))
    if replace and not overwrite:
        raise FileExistsError(f'generate_synth_scenes: {out} exists and is not empty; remove it '
                              'or pass overwrite=True (--overwrite) to generate SynthScenes there')
    os.makedirs(osp.dirname(out), exist_ok=True)
    tmp = f'{out}.tmp-{secrets.token_hex(4)}'
    os.mkdir(tmp)
    try:
        make_dirs(tmp)
        jobs = [(tmp, 'train' if i < num_train else 'val', i, seed, size)
                for i in range(num_train + num_val)]
        bar = dict(total=len(jobs), desc='SynthScenes', unit='img', disable=not progress)
        if workers > 1:
            with multiprocessing.Pool(min(workers, len(jobs))) as pool:
                records = list(tqdm(pool.imap(_write_one, jobs, chunksize=8), **bar))
        else:
            records = [_write_one(job) for job in tqdm(jobs, **bar)]
        write_indexes(tmp, records)
        if replace:  # the old set goes only once the new one is complete
            old = f'{out}.old-{secrets.token_hex(4)}'
            os.rename(out, old)
            os.rename(tmp, out)
            if osp.isdir(old):
                shutil.rmtree(old)
            else:
                os.remove(old)
        else:
            os.rename(tmp, out)  # onto a missing or empty folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
