"""PASCAL-Context multi-task (semseg, human parts, saliency, normals, edges), ATRC/InvPT layout.

The decoding follows InvPT's ``data/pascal_context.py`` (itself from ASTMT):
semantic 21 classes from ``semseg/{VOC12,pascal-context}/<id>.png``; human parts from the
PASCAL-Part ``anno`` struct mapped to 6 parts + background; saliency ``sal_distill/<id>.png``
/ 255 > 0.5; normals ``normals_distill/<id>.png`` kept only on pixels whose full-context
class (``LabelMap``) is in ``normal_classes``; edges from ``LabelMap`` by Laplacian != 0
then thinning.
"""
import os.path as osp
from functools import partial

import cv2
import numpy as np
import scipy.io
from scipy import ndimage

from modzoo.registry import DATASETS
from .base import (TaskDataset, check_files, check_labels, read_label_png, read_normal_png,
                   read_split_file)

PASCAL_CONTEXT_CLASSES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle',
                          'bus', 'car', 'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse',
                          'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train',
                          'tvmonitor')
PART_CLASSES = ('background', 'head', 'torso', 'upper_arm', 'lower_arm', 'upper_leg',
                'lower_leg')
PERSON_CLASS_IND = 15  # PASCAL VOC class index of 'person' in the PASCAL-Part objects
# PASCAL-Part person part name -> index in PART_CLASSES (InvPT's HUMAN_PART[6]); left and
# right merge, so a horizontal flip needs no label swap.
HUMAN_PART_INDEX = {
    'head': 1, 'hair': 1, 'lear': 1, 'rear': 1, 'lebrow': 1, 'rebrow': 1, 'leye': 1,
    'reye': 1, 'mouth': 1, 'nose': 1,
    'torso': 2, 'neck': 2,
    'luarm': 3, 'ruarm': 3,
    'llarm': 4, 'rlarm': 4, 'lhand': 4, 'rhand': 4,
    'luleg': 5, 'ruleg': 5,
    'llleg': 6, 'rlleg': 6, 'lfoot': 6, 'rfoot': 6,
}
# LabelMap values (459-class PASCAL-Context ids) whose normals InvPT keeps: the names in
# both ASTMT's context_classes.json and nyu_classes.json, except 'unknown', plus
# 'tvmonitor' (427).
NYU_NORMAL_CONTEXT_CLASSES = (
    3, 4, 6, 9, 10, 11, 13, 15, 17, 18, 22, 23, 29, 30, 33, 34, 36, 37, 38, 39, 41, 43, 46, 49,
    50, 51, 53, 55, 56, 59, 61, 62, 65, 66, 68, 69, 72, 73, 78, 83, 84, 85, 87, 88, 95, 96, 101,
    104, 105, 107, 111, 113, 115, 122, 124, 135, 141, 142, 143, 146, 150, 154, 157, 158, 159,
    165, 172, 174, 181, 183, 184, 191, 193, 195, 197, 199, 202, 213, 215, 216, 219, 220, 223,
    225, 228, 230, 232, 233, 238, 239, 242, 243, 246, 250, 251, 252, 255, 260, 261, 263, 269,
    272, 273, 275, 281, 283, 284, 285, 286, 287, 288, 290, 291, 292, 293, 295, 304, 307, 309,
    310, 314, 315, 319, 323, 329, 330, 331, 336, 342, 345, 349, 350, 351, 352, 355, 357, 368,
    370, 371, 374, 379, 380, 383, 384, 397, 401, 403, 405, 407, 408, 411, 412, 413, 414, 417,
    419, 421, 423, 427, 429, 430, 432, 440, 441, 442, 443, 444, 446, 454, 457)


def _guo_hall_luts():
    """Deletion look-up tables of Guo & Hall's two-subiteration thinning (CACM 1989).

    Index n encodes the 8 neighbours x1..x8 (bit i = x_{i+1}; x1 east, then
    counter-clockwise: NE, N, NW, W, SW, S, SE). A pixel is deleted when
    G1: exactly one of the 4 pairs (x_{2i-1} = 0 and (x_{2i} or x_{2i+1})) holds,
    G2: min(N1, N2) is 2 or 3, N1 = #pairs (x_{2k-1} or x_{2k}), N2 = #(x_{2k} or x_{2k+1}),
    G3 (first subiteration): not ((x2 or x3 or not x8) and x1); G3' (second): the same
    rotated by 180 degrees, not ((x6 or x7 or not x4) and x5).
    """
    x = ((np.arange(256)[:, None] >> np.arange(8)) & 1) == 1  # [256, 8]: x[:, i] = x_{i+1}
    odd, even, next_odd = x[:, 0::2], x[:, 1::2], np.roll(x[:, 0::2], -1, axis=1)
    g1 = (~odd & (even | next_odd)).sum(1) == 1
    n1 = (odd | even).sum(1)
    n2 = (even | next_odd).sum(1)
    g2 = np.isin(np.minimum(n1, n2), (2, 3))
    g3 = ~((x[:, 1] | x[:, 2] | ~x[:, 7]) & x[:, 0])
    g3p = ~((x[:, 5] | x[:, 6] | ~x[:, 3]) & x[:, 4])
    return g1 & g2 & g3, g1 & g2 & g3p


_THIN_LUTS = _guo_hall_luts()
_NEIGHBOUR_BITS = np.array([[8, 4, 2], [16, 0, 1], [32, 64, 128]], dtype=np.uint8)


def thin(mask):
    """Thin a binary mask [H, W] to one-pixel-wide lines (same result as skimage's ``thin``)."""
    skeleton = np.asarray(mask, dtype=bool).astype(np.uint8)
    count = -1
    while count != skeleton.sum():
        count = skeleton.sum()
        for lut in _THIN_LUTS:
            neighbours = ndimage.correlate(skeleton, _NEIGHBOUR_BITS, mode='constant')
            skeleton[lut[neighbours]] = 0
    return skeleton.astype(bool)


def edges_from_label_map(label_map):
    """uint8 [H, W] {0, 1} boundaries: thin(|Laplacian(LabelMap)| > 0), as InvPT."""
    laplacian = cv2.Laplacian(label_map.astype(np.float64), cv2.CV_64F)
    return thin(np.abs(laplacian) > 0).astype(np.uint8)


def _load_mat(path, name):
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except (ValueError, scipy.io.matlab.MatReadError) as error:
        raise OSError(f"cannot read MATLAB file '{path}': {error}") from error
    if name not in mat:
        raise KeyError(f"MATLAB file '{path}' has no variable '{name}' (has: "
                       f"{sorted(k for k in mat if not k.startswith('__'))})")
    return mat[name]


def _read_label_map(path):
    label_map = _load_mat(path, 'LabelMap')
    if label_map.ndim != 2:
        raise ValueError(f"LabelMap in '{path}' has shape {label_map.shape}: expected [H, W]")
    return label_map


def _persons(path):
    """The PASCAL-Part objects of an ``anno`` file that are persons."""
    return [obj for obj in np.atleast_1d(_load_mat(path, 'anno').objects)
            if int(obj.class_ind) == PERSON_CLASS_IND]


def _persons_with_parts(path):
    """The persons of an ``anno`` file with annotated parts."""
    return [obj for obj in _persons(path) if np.atleast_1d(obj.parts).size]


def _has_person(path):
    """Whether an ``anno`` file holds a person of non-zero mask area (InvPT's
    ``has_human_parts``, part annotations or not)."""
    return any(np.asarray(obj.mask).sum() > 0 for obj in _persons(path))


def read_human_parts(path, img_shape):
    """uint8 [H, W] parts (0 = background, 1..6 = ``PART_CLASSES``) of the persons in a
    PASCAL-Part ``anno`` file; all 255 (ignored) of ``img_shape`` when no person has part
    annotations."""
    persons = _persons_with_parts(path)
    if not persons:
        return np.full(img_shape, 255, dtype=np.uint8)
    parts = np.zeros(np.shape(persons[0].mask), dtype=np.uint8)
    for person in persons:
        for part in np.atleast_1d(person.parts):
            name = str(part.part_name)
            if name not in HUMAN_PART_INDEX:
                raise ValueError(f"human parts '{path}': person part '{name}' is not one of "
                                 f'{sorted(HUMAN_PART_INDEX)}')
            parts[np.asarray(part.mask, dtype=bool)] = HUMAN_PART_INDEX[name]
    return parts


def decode_pascal_context(results, normal_classes):
    """The gt arrays of one sample, read from ``results['ann_paths']``.

    gt_sem_seg uint8 [H, W] (0 = background, 255 = ignore); gt_parts uint8 [H, W]
    (``read_human_parts``); gt_saliency uint8 [H, W] {0, 1}; gt_normal float32 [H, W, 3]
    (``read_normal_png``, zeroed where LabelMap is not in ``normal_classes``; None keeps
    every pixel); gt_edge uint8 [H, W] {0, 1} (``edges_from_label_map``).
    """
    paths = results['ann_paths']
    labels = {}
    label_map = None
    if 'gt_normal' in paths or 'gt_edge' in paths:
        label_map = _read_label_map(results['label_map_path'])
    if 'gt_sem_seg' in paths:
        labels['gt_sem_seg'] = read_label_png(paths['gt_sem_seg'])
    if 'gt_parts' in paths:
        labels['gt_parts'] = read_human_parts(paths['gt_parts'], results['img'].shape[:2])
    if 'gt_saliency' in paths:
        labels['gt_saliency'] = (read_label_png(paths['gt_saliency']) > 127.5).astype(np.uint8)
    if 'gt_normal' in paths:
        normal = read_normal_png(paths['gt_normal'])
        if normal.shape[:2] != label_map.shape:
            raise ValueError(f"normals '{paths['gt_normal']}' have size {normal.shape[:2]} but "
                             f"LabelMap '{results['label_map_path']}' has {label_map.shape}")
        if normal_classes is not None:
            normal[~np.isin(label_map, normal_classes)] = 0.0
        labels['gt_normal'] = normal
    if 'gt_edge' in paths:
        labels['gt_edge'] = edges_from_label_map(label_map)
    return labels


# label kind -> (folder, file suffix) of its file; edges come from the LabelMap file
PASCAL_LABELS = {
    'sem_seg': ('semseg/pascal-context', '.png'),
    'parts': ('human_parts', '.mat'),
    'saliency': ('sal_distill', '.png'),
    'normal': ('normals_distill', '.png'),
    'edge': ('pascal-context/trainval', '.mat'),
}


@DATASETS.register_module()
class PascalContextDataset(TaskDataset):
    """PASCAL-Context as ATRC/InvPT ship it: ``JPEGImages/<id>.jpg``,
    ``ImageSets/Context/<split>.txt``, ``semseg/{VOC12,pascal-context}/<id>.png`` (VOC12
    preferred where present, as InvPT), ``human_parts/<id>.mat``, ``sal_distill/<id>.png``,
    ``normals_distill/<id>.png``, ``pascal-context/trainval/<id>.mat`` (``LabelMap``).

    Args:
        data_root (str): the ``PASCALContext`` folder.
        split (str): 'train' or 'val'.
        labels (tuple[str]): which labels to load, any of 'sem_seg', 'parts', 'saliency',
            'normal', 'edge' (becoming ``gt_<label>``).
        normal_classes (tuple[int] | None): LabelMap values where normals are kept;
            default the NYU-class list InvPT uses; None keeps all pixels.
        person_only (bool): keep only the images with a person object of non-zero mask area,
            with or without part annotations (InvPT does this when human parts is the only
            task; a person without parts gives an all-255 parts label); needs 'parts' in
            ``labels``.
        **kwargs: see ``TaskDataset``; ``metainfo`` holds ``classes`` (21) and
            ``part_classes`` (7).
    """
    METAINFO = dict(classes=PASCAL_CONTEXT_CLASSES, part_classes=PART_CLASSES)
    SPLITS = dict(train='train', val='val')

    def __init__(self, data_root, split='train', labels=tuple(PASCAL_LABELS),
                 normal_classes=NYU_NORMAL_CONTEXT_CLASSES, person_only=False, **kwargs):
        self.labels = check_labels(labels, PASCAL_LABELS, 'PascalContextDataset')
        if person_only and 'parts' not in self.labels:
            raise ValueError("PascalContextDataset: person_only=True needs 'parts' in labels, "
                             f'got {list(self.labels)}')
        self.person_only = person_only
        normal_classes = None if normal_classes is None else tuple(normal_classes)
        self.ann_decoder = partial(decode_pascal_context, normal_classes=normal_classes)
        super().__init__(data_root, split, **kwargs)

    def _folder(self, name):
        return osp.join(self.data_root, name)

    def load_data_list(self):
        ids = read_split_file(
            self._folder(f'ImageSets/Context/{self.split}.txt'), 'PascalContextDataset')
        check_files(self._folder('JPEGImages'), [f'{i}.jpg' for i in ids],
                    'PascalContextDataset images')
        needed = set(self.labels) | ({'edge'} if 'normal' in self.labels else set())
        for label in needed - {'sem_seg'}:
            folder, suffix = PASCAL_LABELS[label]
            check_files(self._folder(folder), [i + suffix for i in ids],
                        f'PascalContextDataset {label}')
        data_list = []
        for image_id in ids:
            ann_paths = {f'gt_{label}': osp.join(self._folder(PASCAL_LABELS[label][0]),
                                                 image_id + PASCAL_LABELS[label][1])
                         for label in self.labels}
            if 'sem_seg' in self.labels:
                ann_paths['gt_sem_seg'] = self._semseg_path(image_id)
            data_list.append(dict(
                img_path=osp.join(self._folder('JPEGImages'), f'{image_id}.jpg'),
                label_map_path=osp.join(self._folder('pascal-context/trainval'),
                                        f'{image_id}.mat'),
                ann_paths=ann_paths))
        if self.person_only:
            data_list = [info for info in data_list
                         if _has_person(info['ann_paths']['gt_parts'])]
        return data_list

    def _semseg_path(self, image_id):
        for folder in ('semseg/VOC12', 'semseg/pascal-context'):
            path = osp.join(self._folder(folder), f'{image_id}.png')
            if osp.isfile(path):
                return path
        raise FileNotFoundError(
            f"PascalContextDataset sem_seg: neither '{self._folder('semseg/VOC12')}' nor "
            f"'{self._folder('semseg/pascal-context')}' holds '{image_id}.png'")
