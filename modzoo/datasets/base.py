"""What every modzoo real-format loader shares: splits, pipeline building, file checks.

A loader lists its samples once (``load_data_list``: image path plus label paths). The
labels that need decoding are decoded per sample by the pipeline's ``LoadTaskAnnotations``,
which calls the dataset's ``ann_decoder``: a picklable function (usually a
``functools.partial`` of a module-level function in the dataset's own file) that
``get_data_info`` hands over in ``results['ann_decoder']``. It reads
``results['ann_paths']`` (gt key -> file) and returns ``{gt key: numpy array}``.
"""
import os
import os.path as osp

import numpy as np
from mmengine.dataset import BaseDataset

from modzoo.registry import TRANSFORMS
from .transforms.loading import read_image


class TaskDataset(BaseDataset):
    """Base of the loaders: ``split`` names a split, the pipeline is built in scope modzoo.

    Args:
        data_root (str): the dataset's root folder, in the real dataset's layout.
        split (str): one of ``SPLITS`` (e.g. 'train', 'val'); each loader maps it to its
            dataset's own folder or split-file name.
        pipeline (list[dict | callable]): transforms, built from the modzoo registry.
        metainfo (dict, optional): overrides ``METAINFO`` (e.g. ``dict(classes=...)``).
        test_mode, lazy_init, indices, **kwargs: as ``mmengine.dataset.BaseDataset``.

    Subclasses set their own attributes before calling ``super().__init__`` (which loads
    the data list unless ``lazy_init``) and set ``self.ann_decoder`` when samples carry
    label files.
    """
    SPLITS: dict = {}
    ann_decoder = None

    def __init__(self, data_root, split='train', pipeline=(), metainfo=None,
                 test_mode=False, lazy_init=False, indices=None, **kwargs):
        if split not in self.SPLITS:
            raise ValueError(f"{type(self).__name__}: split '{split}' is not one of "
                             f'{sorted(self.SPLITS)}')
        self.split = split
        pipeline = [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in pipeline]
        super().__init__(data_root=data_root, metainfo=metainfo, pipeline=pipeline,
                         test_mode=test_mode, lazy_init=lazy_init, indices=indices, **kwargs)

    def get_data_info(self, idx):
        info = super().get_data_info(idx)
        if self.ann_decoder is not None:
            info['ann_decoder'] = self.ann_decoder
        return info


def check_labels(labels, known, dataset):
    """Validate a loader's ``labels`` argument against the label kinds it knows."""
    labels = tuple(labels)
    unknown = [name for name in labels if name not in known]
    if unknown or not labels:
        raise ValueError(f'{dataset}: labels {list(labels)} must be a non-empty subset of '
                         f'{list(known)} (unknown: {unknown})')
    return labels


def read_split_file(path, dataset):
    """Image ids of a split file: the first word of each non-empty line."""
    if not osp.isfile(path):
        raise FileNotFoundError(f"{dataset}: split file '{path}' not found (expected a text "
                                'file with one image id per line)')
    with open(path) as f:
        ids = [line.split()[0] for line in f if line.strip()]
    if not ids:
        raise ValueError(f"{dataset}: split file '{path}' lists no image ids")
    return ids


def check_files(folder, names, what):
    """Raise FileNotFoundError naming the first of ``names`` that ``folder`` lacks."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f"{what}: folder '{folder}' not found")
    present = set(os.listdir(folder))
    missing = [name for name in names if name not in present]
    if missing:
        raise FileNotFoundError(f"{what}: '{osp.join(folder, missing[0])}' not found "
                                f'({len(missing)} of {len(names)} expected files missing)')


def reduce_zero_label(seg):
    """[H, W] uint8 label map: 0 (unlabelled) -> 255, v -> v - 1, 255 stays 255."""
    return np.where((seg == 0) | (seg == 255), 255, seg - 1).astype(np.uint8)


def read_label_png(path):
    """[H, W] uint8 label map of a single-channel (or palette) png, values as stored."""
    seg = read_image(path, flag='unchanged', backend='pillow')
    if seg.ndim != 2:
        raise ValueError(f"label map '{path}' has shape {seg.shape}: expected a "
                         'single-channel [H, W] png')
    return seg.astype(np.uint8)


def read_normal_png(path):
    """[H, W, 3] float32 unit normals from an RGB png storing (n + 1) / 2 * 255.

    Decoded as 2 * v / 255 - 1 (InvPT) and renormalised to unit length (removes the
    8-bit quantisation). A pixel stored as (0, 0, 0) has no normal: it becomes the zero
    vector, the ignore value of ``gt_normal``.
    """
    png = read_image(path, flag='color')
    normal = png.astype(np.float32) * (2.0 / 255.0) - 1.0
    norm = np.linalg.norm(normal, axis=2, keepdims=True)
    valid = png.any(axis=2, keepdims=True)
    return np.where(valid, normal / np.maximum(norm, 1e-6), 0.0).astype(np.float32)
