"""COCO detection and instance segmentation AP, computed by pycocotools' ``COCOeval``."""
import contextlib
import io
import os.path as osp
from typing import Optional, Sequence

import numpy as np
from mmengine.fileio import dump
from mmengine.logging import print_log
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from modzoo.registry import METRICS
from .base import TaskMetric

# COCOeval.stats[0:6] under mmdet's names
STAT_NAMES = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')


def load_coco(ann_file: str) -> COCO:
    """pycocotools' COCO of ``ann_file`` without its progress prints; a clear error when the
    file is missing."""
    if not osp.isfile(ann_file):
        raise FileNotFoundError(f"CocoMetric: annotation file '{ann_file}' not found (expected "
                                'a COCO instances json)')
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(ann_file)


def encode_masks(masks: np.ndarray) -> list:
    """COCO RLEs (``counts`` as str, json-ready) of binary masks uint8 [N, H, W]."""
    rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0)))
    for rle in rles:
        rle['counts'] = rle['counts'].decode()
    return rles


def class_ap_table(coco_eval: COCOeval, names: Sequence[str]) -> str:
    """Per-class AP (IoU 0.50:0.95, all areas, 100 detections) in percent, as a text table;
    '-' for a class without ground truth."""
    precision = coco_eval.eval['precision'][:, :, :, 0, -1]  # [T, R, K]
    rows = []
    for k, name in enumerate(names):
        valid = precision[:, :, k][precision[:, :, k] > -1]
        ap = f'{100 * valid.mean():6.2f}' if valid.size else f'{"-":>6}'
        rows.append(f'{name:<24} {ap}')
    return '\n'.join([f'{"class":<24} {"AP":>6}'] + rows)


@METRICS.register_module()
class CocoMetric(TaskMetric):
    """COCO AP of boxes (``bbox``) and masks (``segm``) in percent, by pycocotools.

    Reads ``pred_instances`` (bboxes [N, 4] xyxy and masks [N, H, W] in the original image's
    pixels, scores [N], labels [N]) and the sample's ``img_id``; the ground truth is the
    COCO json ``ann_file`` (crowd regions included, as COCOeval expects), by default the
    instances file of the :class:`CocoDataset` that labels ``task``. Labels map to category
    ids through the class names. Keys: ``<task>/<bbox|segm>_<mAP|mAP_50|mAP_75|mAP_s|mAP_m|
    mAP_l>`` (COCOeval's six AP figures, 100 detections per image; -1 where no ground truth
    falls in the area range, as COCOeval says); the per-class AP table goes to the log.
    Only the images that were evaluated count (``imgIds``).

    Args:
        task: the task measured.
        ann_file: the COCO instances json; default: from the dataset's metainfo.
        metric: 'bbox', 'segm' or both.
        classwise: log the per-class AP table.
        outfile_prefix: also write the detections as COCO results json,
            ``<prefix>.bbox.json`` / ``<prefix>.segm.json`` (submission format).
        format_only: only write the results json (e.g. for test-dev); needs
            ``outfile_prefix``.
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir`` of :class:`TaskMetric`.
    """

    def __init__(self, task: str, ann_file: Optional[str] = None,
                 metric: Sequence[str] = ('bbox', 'segm'), classwise: bool = True,
                 outfile_prefix: Optional[str] = None, format_only: bool = False, **kwargs):
        super().__init__(task, **kwargs)
        self.iou_types = (metric, ) if isinstance(metric, str) else tuple(metric)
        bad = [m for m in self.iou_types if m not in ('bbox', 'segm')]
        if bad or not self.iou_types:
            raise ValueError(f"CocoMetric: metric must be 'bbox', 'segm' or both, got {metric!r}")
        if format_only and not outfile_prefix:
            raise ValueError('CocoMetric: format_only=True needs an outfile_prefix to write to')
        self.ann_file = ann_file
        self.classwise = classwise
        self.outfile_prefix = outfile_prefix
        self.format_only = format_only

    def sample_stats(self, sample: dict) -> dict:
        """The sample's detections as COCO result dicts (bbox xywh, RLE segmentation)."""
        pred = self.field(sample, 'pred_instances')
        img_id = self.field(sample, 'img_id')
        boxes = pred['bboxes'].detach().cpu().numpy().astype(np.float64)
        boxes[:, 2:] -= boxes[:, :2]
        scores = pred['scores'].detach().cpu().numpy().tolist()
        labels = pred['labels'].cpu().numpy().tolist()
        rles = encode_masks(pred['masks'].cpu().numpy().astype(np.uint8)) \
            if 'segm' in self.iou_types else [None] * len(labels)
        dets = [dict(image_id=img_id, label=label, bbox=box, score=score, segmentation=rle)
                for label, box, score, rle in zip(labels, boxes.tolist(), scores, rles)]
        return dict(img_id=img_id, dets=dets)

    def _ann_file(self) -> str:
        if self.ann_file:
            return self.ann_file
        for source in (self.dataset_meta or {}).get('sources', {}).values():
            if self.task in source.get('tasks', ()) and source.get('ann_file'):
                return source['ann_file']
        raise ValueError(f"CocoMetric: no ann_file for task '{self.task}': set ann_file, or "
                         "evaluate on a CocoDataset (its metainfo names its instances json)")

    def _category_ids(self, coco: COCO) -> list:
        """Category id of each label: the categories named by the dataset's classes (all the
        json's categories in id order when the dataset has no class list)."""
        categories = sorted(coco.loadCats(coco.getCatIds()), key=lambda c: c['id'])
        id_of = {c['name']: c['id'] for c in categories}
        classes = self._classes() or [c['name'] for c in categories]
        unknown = [name for name in classes if name not in id_of]
        if unknown:
            raise ValueError(f'CocoMetric: classes {unknown} are not categories of '
                             f"'{self._ann_file()}'")
        return [id_of[name] for name in classes]

    def _classes(self):
        for source in (self.dataset_meta or {}).get('sources', {}).values():
            if self.task in source.get('tasks', ()) and source.get('classes'):
                return list(source['classes'])
        return list((self.dataset_meta or {}).get('classes') or [])

    def summarize(self, stats: list) -> dict:
        coco = load_coco(self._ann_file())
        cat_ids = self._category_ids(coco)
        results = {t: [] for t in self.iou_types}
        for entry in stats:
            for det in entry['dets']:
                base = dict(image_id=det['image_id'], category_id=cat_ids[det['label']],
                            score=det['score'])
                if 'bbox' in results:
                    results['bbox'].append(dict(base, bbox=det['bbox']))
                if 'segm' in results:
                    results['segm'].append(dict(base, segmentation=det['segmentation']))
        if self.outfile_prefix:
            for iou_type, dets in results.items():
                dump(dets, f'{self.outfile_prefix}.{iou_type}.json')
                print_log(f'CocoMetric: {len(dets)} {iou_type} results written to '
                          f'{self.outfile_prefix}.{iou_type}.json', logger='current')
        if self.format_only:
            return {}
        img_ids = sorted({entry['img_id'] for entry in stats})
        unknown = sorted(set(img_ids) - set(coco.getImgIds()))
        if unknown:
            raise ValueError(f'CocoMetric: image ids {unknown[:5]} are not in '
                             f"'{self._ann_file()}'")
        metrics = {}
        for iou_type, dets in results.items():
            metrics.update(self._evaluate(coco, dets, iou_type, img_ids, cat_ids))
        return metrics

    def _evaluate(self, coco, dets, iou_type, img_ids, cat_ids) -> dict:
        """COCOeval's six AP figures (percent) of one IoU type; 0 without detections."""
        if not dets:
            print_log(f'CocoMetric: no {iou_type} detections; AP is 0', logger='current')
            return {f'{iou_type}_{name}': 0.0 for name in STAT_NAMES}
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = coco.loadRes(dets)
        coco_eval = COCOeval(coco, coco_dt, iou_type)
        coco_eval.params.imgIds = img_ids
        coco_eval.params.catIds = cat_ids
        summary = io.StringIO()
        with contextlib.redirect_stdout(summary):
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        print_log(f'CocoMetric {iou_type}:\n{summary.getvalue()}', logger='current')
        if self.classwise:
            names = self._classes() or [coco.cats[i]['name'] for i in cat_ids]
            print_log(f'CocoMetric {iou_type} per class:\n{class_ap_table(coco_eval, names)}',
                      logger='current')
        # COCOeval's -1 (no ground truth in that area range) stays -1
        return {f'{iou_type}_{name}': round(100 * float(v), 4) if v >= 0 else -1.0
                for name, v in zip(STAT_NAMES, coco_eval.stats[:6])}
