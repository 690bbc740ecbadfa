"""COCO instances (boxes, masks) with optional captions, read with pycocotools."""
import contextlib
import io
import json
import os.path as osp
from collections import defaultdict
from functools import partial

import numpy as np
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from modzoo.registry import DATASETS
from .base import TaskDataset, check_files


def segmentation_to_mask(segmentation, h, w):
    """uint8 [h, w] mask of a COCO segmentation: polygons, uncompressed or compressed RLE."""
    if isinstance(segmentation, list):
        rle = mask_util.merge(mask_util.frPyObjects(segmentation, h, w))
    elif isinstance(segmentation['counts'], list):
        rle = mask_util.frPyObjects(segmentation, h, w)
    else:
        rle = segmentation
    return mask_util.decode(rle).astype(np.uint8)


def decode_coco(results, with_mask):
    """gt_bboxes float32 [N, 4] xyxy, gt_bboxes_labels int64 [N] and (``with_mask``)
    gt_masks uint8 [N, H, W] of one image from ``results['instances']``."""
    instances = results.pop('instances')
    labels = dict(
        gt_bboxes=np.array([i['bbox'] for i in instances], dtype=np.float32).reshape(-1, 4),
        gt_bboxes_labels=np.array([i['bbox_label'] for i in instances], dtype=np.int64))
    if with_mask:
        h, w = results['height'], results['width']
        masks = [segmentation_to_mask(i['mask'], h, w) for i in instances]
        labels['gt_masks'] = np.stack(masks) if masks else np.zeros((0, h, w), np.uint8)
    return labels


def _load_json(path, what):
    if not osp.isfile(path):
        raise FileNotFoundError(f"CocoDataset: {what} file '{path}' not found (expected a COCO "
                                f'{what} json)')
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as error:
        message = f"CocoDataset: {what} file '{path}' is not valid json: {error}"
        raise ValueError(message) from error


@DATASETS.register_module()
class CocoDataset(TaskDataset):
    """COCO detection / instance segmentation, and captions when a captions file is given.

    Layout: ``<split>/<file_name>`` images, ``annotations/instances_<split>.json``
    (``split`` 'train' -> ``train2017``, 'val' -> ``val2017``). Boxes become xyxy; crowd
    annotations and boxes under 1 pixel wide or high are skipped (as mmdet does for
    training). Classes are the json categories (sorted by id) unless
    ``metainfo=dict(classes=...)`` selects some by name (label = index in that list;
    annotations of other categories are dropped).

    Args:
        data_root (str): the COCO folder.
        split (str): 'train' or 'val'.
        ann_file (str, optional): instances json, relative to ``data_root``; default
            ``annotations/instances_<split>.json``.
        caption_file (str, optional): captions json (relative to ``data_root``), e.g.
            ``annotations/captions_train2017.json``; each sample then has ``gt_text``
            (all captions of the image, list[str]).
        with_mask (bool): decode instance masks (``gt_masks``).
        multilabel (bool): also give ``gt_labels`` (float32 [C] multi-hot), the classes of
            all the image's annotations, crowd and tiny ones included, as the multi-label
            classification benchmarks count them.
        **kwargs: see ``TaskDataset``.
    """
    SPLITS = dict(train='train2017', val='val2017', train2014='train2014', val2014='val2014')

    def __init__(self, data_root, split='train', ann_file=None, caption_file=None,
                 with_mask=True, multilabel=False, **kwargs):
        self.instances_file = osp.join(
            data_root, ann_file or f'annotations/instances_{self.SPLITS.get(split)}.json')
        self.caption_file = caption_file and osp.join(data_root, caption_file)
        self.with_mask = with_mask
        self.multilabel = multilabel
        self.ann_decoder = partial(decode_coco, with_mask=with_mask)
        super().__init__(data_root, split, **kwargs)

    def _label_of_category(self, coco):
        """{category id: label index}; sets ``metainfo['classes']`` from the json if unset."""
        categories = sorted(coco.loadCats(coco.getCatIds()), key=lambda c: c['id'])
        id_of = {c['name']: c['id'] for c in categories}
        classes = self._metainfo.get('classes')
        if classes is None:
            classes = tuple(c['name'] for c in categories)
            self._metainfo['classes'] = classes
        unknown = [name for name in classes if name not in id_of]
        if unknown:
            raise ValueError(f"CocoDataset: classes {unknown} are not categories of "
                             f"'{self.instances_file}' (it has {sorted(id_of)})")
        return {id_of[name]: label for label, name in enumerate(classes)}

    def load_data_list(self):
        coco = COCO()
        coco.dataset = _load_json(self.instances_file, 'instances')
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco.createIndex()
        label_of = self._label_of_category(coco)
        captions = defaultdict(list)
        if self.caption_file:
            for ann in _load_json(self.caption_file, 'captions')['annotations']:
                captions[ann['image_id']].append(ann['caption'])
        img_dir = osp.join(self.data_root, self.SPLITS[self.split])
        images = coco.loadImgs(sorted(coco.getImgIds()))
        check_files(img_dir, [img['file_name'] for img in images], 'CocoDataset images')
        data_list = []
        for img in images:
            instances = []
            gt_labels = np.zeros(len(label_of), dtype=np.float32)
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=img['id'])):
                if ann['category_id'] in label_of:
                    gt_labels[label_of[ann['category_id']]] = 1.
                x, y, w, h = ann['bbox']
                if ann.get('iscrowd', 0) or ann['category_id'] not in label_of or min(w, h) < 1:
                    continue
                if self.with_mask and not ann.get('segmentation'):
                    raise ValueError(f"CocoDataset: annotation {ann['id']} of image {img['id']} "
                                     f"in '{self.instances_file}' has no segmentation "
                                     '(use with_mask=False for boxes only)')
                instances.append(dict(bbox=[x, y, x + w, y + h],
                                      bbox_label=label_of[ann['category_id']],
                                      mask=ann.get('segmentation')))
            info = dict(img_path=osp.join(img_dir, img['file_name']), img_id=img['id'],
                        height=img['height'], width=img['width'], instances=instances,
                        ann_paths=dict(gt_masks=f"{self.instances_file} (image id {img['id']})"))
            if self.caption_file:
                info['gt_text'] = captions[img['id']]
            if self.multilabel:
                info['gt_labels'] = gt_labels
            data_list.append(info)
        return data_list
