"""NYUD-v2 multi-task (semseg, depth, normals, edges) in the ATRC/InvPT layout."""
import os.path as osp

import numpy as np

from modzoo.registry import DATASETS
from .base import (TaskDataset, check_files, check_labels, read_label_png, read_normal_png,
                   read_split_file, reduce_zero_label)

NYUD_CLASSES = (
    'wall', 'floor', 'cabinet', 'bed', 'chair', 'sofa', 'table', 'door', 'window', 'bookshelf',
    'picture', 'counter', 'blinds', 'desk', 'shelves', 'curtain', 'dresser', 'pillow',
    'mirror', 'floor mat', 'clothes', 'ceiling', 'books', 'refridgerator', 'television',
    'paper', 'towel', 'shower curtain', 'box', 'whiteboard', 'person', 'night stand', 'toilet',
    'sink', 'lamp', 'bathtub', 'bag', 'otherstructure', 'otherfurniture', 'otherprop')


def _read_sem_seg(path):
    return reduce_zero_label(read_label_png(path))


def _read_depth(path):
    depth = np.load(path, allow_pickle=False)
    if depth.ndim != 2:
        raise ValueError(f"NYUD depth '{path}' has shape {depth.shape}: expected [H, W] metres")
    return depth.astype(np.float32)


def _read_edge(path):
    return (read_label_png(path) >= 128).astype(np.uint8)


# label kind -> (folder, file suffix, reader returning the gt array)
NYUD_LABELS = {
    'sem_seg': ('segmentation', '.png', _read_sem_seg),
    'depth': ('depth', '.npy', _read_depth),
    'normal': ('normals', '.png', read_normal_png),
    'edge': ('edge', '.png', _read_edge),
}


def decode_nyud(results):
    """The gt arrays of one sample, read from ``results['ann_paths']``.

    gt_sem_seg uint8 [H, W]: png label - 1 (0 = unlabelled -> 255), 40 classes.
    gt_depth float32 [H, W]: metres from the .npy, 0 = no depth.
    gt_normal float32 [H, W, 3]: png decoded by ``read_normal_png``.
    gt_edge uint8 [H, W]: png / 255 ({0, 255} -> {0, 1}).
    """
    return {key: NYUD_LABELS[key.removeprefix('gt_')][2](path)
            for key, path in results['ann_paths'].items()}


@DATASETS.register_module()
class NYUDDataset(TaskDataset):
    """NYUD-v2 as ATRC/InvPT ship it: ``images/<id>.png`` (RGB), ``segmentation/<id>.png``,
    ``depth/<id>.npy``, ``normals/<id>.png``, ``edge/<id>.png``, ``gt_sets/<split>.txt``.

    Args:
        data_root (str): the ``NYUDv2`` folder.
        split (str): 'train' or 'val' (the 654 test images, as InvPT).
        labels (tuple[str]): which labels to load, any of 'sem_seg', 'depth', 'normal',
            'edge' (becoming ``gt_<label>``).
        **kwargs: see ``TaskDataset``; ``metainfo=dict(classes=...)`` replaces the 40 NYUD
            classes.
    """
    METAINFO = dict(classes=NYUD_CLASSES)
    SPLITS = dict(train='train', val='val')

    def __init__(self, data_root, split='train', labels=tuple(NYUD_LABELS), **kwargs):
        self.labels = check_labels(labels, NYUD_LABELS, 'NYUDDataset')
        self.ann_decoder = decode_nyud
        super().__init__(data_root, split, **kwargs)

    def load_data_list(self):
        ids = read_split_file(osp.join(self.data_root, 'gt_sets', f'{self.split}.txt'),
                              'NYUDDataset')
        folders = dict(img=('images', '.png'),
                       **{label: NYUD_LABELS[label][:2] for label in self.labels})
        for label, (folder, suffix) in folders.items():
            check_files(osp.join(self.data_root, folder), [i + suffix for i in ids],
                        f'NYUDDataset {label}')

        def path(label, image_id):
            folder, suffix = folders[label]
            return osp.join(self.data_root, folder, image_id + suffix)

        return [dict(img_path=path('img', i),
                     ann_paths={f'gt_{label}': path(label, i) for label in self.labels})
                for i in ids]
