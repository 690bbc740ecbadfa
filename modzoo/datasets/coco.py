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
    (``split`` 'train' -> ``train2017``, 'val' -> ``val2017``). Boxes become xyxy, clipped to
    the image. Skipped, as mmdet does for training: crowd annotations, boxes under 1 pixel
    wide or high (after clipping: a box outside the image), and, with masks, annotations
    whose polygons all have fewer than 3 points. An image without instances is kept (a
    negative for the detector) unless ``filter_empty_gt``. An annotation whose
    ``category_id`` is not in ``categories`` is an error naming the file and the annotation.
    Classes are the json categories (sorted by id) unless ``metainfo=dict(classes=...)``
    selects some by name (label = index in that list; annotations of other categories are
    dropped). ``metainfo['ann_file']`` is the instances json (``CocoMetric`` reads it).

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
        filter_empty_gt (bool): leave out images without instances (mmdet's training
            ``filter_cfg``); default False: kept as negatives.
        **kwargs: see ``TaskDataset``.
    """
    SPLITS = dict(train='train2017', val='val2017', train2014='train2014', val2014='val2014')

    def __init__(self, data_root, split='train', ann_file=None, caption_file=None,
                 with_mask=True, multilabel=False, filter_empty_gt=False, **kwargs):
        self.instances_file = osp.join(
            data_root, ann_file or f'annotations/instances_{self.SPLITS.get(split)}.json')
        self.caption_file = caption_file and osp.join(data_root, caption_file)
        self.with_mask = with_mask
        self.multilabel = multilabel
        self.filter_empty_gt = filter_empty_gt
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

    def _instance(self, ann, img, label_of):
        """The instance of annotation ``ann`` (bbox xyxy clipped to the image, bbox_label,
        mask), or None when it is skipped (see the class docstring)."""
        if ann.get('iscrowd', 0) or ann['category_id'] not in label_of:
            return None
        x, y, w, h = ann['bbox']
        x1, y1 = max(x, 0), max(y, 0)
        x2, y2 = min(x + w, img['width']), min(y + h, img['height'])
        if min(x2 - x1, y2 - y1) < 1:
            return None
        mask = ann.get('segmentation')
        if self.with_mask:
            if not mask:
                raise ValueError(f"CocoDataset: annotation {ann['id']} of image {img['id']} "
                                 f"in '{self.instances_file}' has no segmentation "
                                 '(use with_mask=False for boxes only)')
            if isinstance(mask, list):
                mask = [p for p in mask if len(p) >= 6 and len(p) % 2 == 0]
                if not mask:
                    return None
        return dict(bbox=[x1, y1, x2, y2], bbox_label=label_of[ann['category_id']], mask=mask)

    def load_data_list(self):
        coco = COCO()
        coco.dataset = _load_json(self.instances_file, 'instances')
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco.createIndex()
        label_of = self._label_of_category(coco)
        self._metainfo['ann_file'] = self.instances_file
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
                if ann['category_id'] not in coco.cats:
                    raise ValueError(f"CocoDataset: annotation {ann['id']} of image {img['id']} "
                                     f"in '{self.instances_file}' has category_id "
                                     f"{ann['category_id']}, which is not in its categories "
                                     f'{sorted(coco.cats)}')
                if ann['category_id'] in label_of:
                    gt_labels[label_of[ann['category_id']]] = 1.
                instance = self._instance(ann, img, label_of)
                if instance is not None:
                    instances.append(instance)
            if self.filter_empty_gt and not instances:
                continue
            info = dict(img_path=osp.join(img_dir, img['file_name']), img_id=img['id'],
                        height=img['height'], width=img['width'], instances=instances,
                        ann_paths=dict(gt_masks=f"{self.instances_file} (image id {img['id']})"))
            if self.caption_file:
                info['gt_text'] = captions[img['id']]
            if self.multilabel:
                info['gt_labels'] = gt_labels
            data_list.append(info)
        return data_list
