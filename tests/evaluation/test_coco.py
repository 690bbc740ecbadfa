import contextlib
import io
import json

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from modzoo.evaluation import CocoMetric, primary_metric_keys

H, W = 40, 60
# two images; gt boxes xywh with their category ids (cats 7 'cube', 3 'ball')
GT = {1: [([2, 3, 20, 10], 7), ([30, 5, 12, 30], 3)],
      2: [([10, 10, 25, 20], 7), ([0, 0, 8, 8], 7), ([40, 20, 15, 15], 3)]}
CLASSES = ('ball', 'cube')  # label 0 -> cat 3, label 1 -> cat 7
LABEL = {3: 0, 7: 1}


def _rect(x, y, w, h):
    mask = np.zeros((H, W), np.uint8)
    mask[int(y):int(y + h), int(x):int(x + w)] = 1
    return mask


@pytest.fixture
def ann_file(tmp_path):
    images = [dict(id=i, file_name=f'{i}.jpg', height=H, width=W) for i in GT]
    anns = []
    for img_id, objects in GT.items():
        for box, cat in objects:
            rle = mask_util.encode(np.asfortranarray(_rect(*box)))
            rle['counts'] = rle['counts'].decode()
            anns.append(dict(id=len(anns) + 1, image_id=img_id, category_id=cat, bbox=box,
                             area=float(box[2] * box[3]), iscrowd=0, segmentation=rle))
    path = tmp_path / 'instances.json'
    path.write_text(json.dumps(dict(images=images, annotations=anns, categories=[
        dict(id=3, name='ball'), dict(id=7, name='cube')])))
    return str(path)


def _pred_sample(sample, img_id, dets):
    """dets: (xywh box, label, score)."""
    s = sample(['det'])
    s.set_metainfo(dict(img_id=img_id))
    boxes = torch.tensor([[x, y, x + w, y + h] for (x, y, w, h), _, _ in dets],
                         dtype=torch.float32).view(-1, 4)
    masks = torch.from_numpy(np.stack([_rect(*b) for b, _, _ in dets])) if dets else \
        torch.zeros(0, H, W, dtype=torch.uint8)
    s.pred_instances = InstanceData(bboxes=boxes, labels=torch.tensor([d[1] for d in dets]),
                                    scores=torch.tensor([d[2] for d in dets]), masks=masks)
    return s


def _metric(ann_file, **kwargs):
    metric = CocoMetric(task='det', **kwargs)
    metric.dataset_meta = dict(tasks=('det', ), sources=dict(coco=dict(
        tasks=('det', ), classes=CLASSES, ann_file=ann_file)))
    return metric


def test_perfect_prediction_is_100(ann_file, sample, evaluate):
    samples = [_pred_sample(sample, i, [(b, LABEL[c], 0.9) for b, c in objs])
               for i, objs in GT.items()]
    samples.append(sample(['cls'], gt_label=0))  # another task: passed over
    r = evaluate(_metric(ann_file), samples)
    for kind in ('bbox', 'segm'):
        assert r[f'det/{kind}_mAP'] == pytest.approx(100)
        assert r[f'det/{kind}_mAP_50'] == pytest.approx(100)
        assert r[f'det/{kind}_mAP_l'] == -1.0  # no large object: COCOeval's -1


def test_hand_built_case_equals_pycocotools(ann_file, sample, evaluate, tmp_path):
    dets = {1: [([2, 3, 20, 10], 1, 0.9),      # exact
                ([31, 8, 12, 30], 0, 0.8),     # IoU 0.82 with the ball
                ([30, 5, 12, 30], 1, 0.7)],    # right box, wrong class
            2: [([12, 12, 25, 20], 1, 0.6),    # IoU 0.72
                ([0, 0, 4, 8], 1, 0.95),       # IoU 0.5
                ([45, 25, 10, 10], 0, 0.3),    # IoU 0.44: a miss
                ([50, 0, 5, 5], 0, 0.99)]}     # a false positive
    samples = [_pred_sample(sample, i, d) for i, d in dets.items()]
    prefix = str(tmp_path / 'results')
    r = evaluate(_metric(ann_file, outfile_prefix=prefix), samples)
    cat_of = {0: 3, 1: 7}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann_file)
        for kind in ('bbox', 'segm'):
            results = [dict(image_id=i, category_id=cat_of[label], bbox=box, score=score)
                       for i, d in dets.items() for box, label, score in d]
            if kind == 'segm':
                for res in results:
                    res['segmentation'] = mask_util.encode(np.asfortranarray(_rect(*res['bbox'])))
                    del res['bbox']
            coco_eval = COCOeval(gt, gt.loadRes(results), kind)
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
            assert 0 < coco_eval.stats[0] < 1
            names = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s')  # all objects are small
            for name, value in zip(names, coco_eval.stats):
                assert r[f'det/{kind}_{name}'] == pytest.approx(100 * value, abs=1e-3)
    written = json.load(open(f'{prefix}.segm.json'))
    assert len(written) == 7 and {d['category_id'] for d in written} == {3, 7}
    assert json.load(open(f'{prefix}.bbox.json'))[0]['bbox'] == [2, 3, 20, 10]


def test_format_only_and_bad_input(ann_file, sample, evaluate, tmp_path):
    samples = [_pred_sample(sample, 1, [([2, 3, 20, 10], 1, 0.9)])]
    prefix = str(tmp_path / 'r')
    assert evaluate(_metric(ann_file, format_only=True, outfile_prefix=prefix,
                            metric='bbox'), samples) == {}
    assert len(json.load(open(f'{prefix}.bbox.json'))) == 1
    with pytest.raises(ValueError, match='outfile_prefix'):
        CocoMetric(task='det', format_only=True)
    with pytest.raises(ValueError, match="'bbox', 'segm'"):
        CocoMetric(task='det', metric='keypoints')
    with pytest.raises(ValueError, match=r'image ids \[5\]'):
        evaluate(_metric(ann_file), [_pred_sample(sample, 5, [([0, 0, 4, 4], 0, 0.5)])])
    # no detections at all: AP 0, not a crash
    r = evaluate(_metric(ann_file, metric='bbox'), [_pred_sample(sample, 1, [])])
    assert r['det/bbox_mAP'] == 0
    assert primary_metric_keys([dict(type='CocoMetric', task='det')]) == ['det/bbox_mAP']
