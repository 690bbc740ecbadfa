import json

import mmcv
import numpy as np
import pytest

from modzoo.datasets.coco import CocoDataset

LOAD = [dict(type='LoadImage'), dict(type='LoadTaskAnnotations')]


def _coco(tmp_path, annotations):
    (tmp_path / 'val2017').mkdir()
    (tmp_path / 'annotations').mkdir()
    for i in (1, 2):
        mmcv.imwrite(np.zeros((20, 30, 3), np.uint8), str(tmp_path / 'val2017' / f'{i}.png'))
    anns = [dict(id=i + 1, image_id=1, iscrowd=0, area=1.0, **a)
            for i, a in enumerate(annotations)]
    (tmp_path / 'annotations' / 'instances_val2017.json').write_text(json.dumps(dict(
        images=[dict(id=i, file_name=f'{i}.png', height=20, width=30) for i in (1, 2)],
        annotations=anns, categories=[dict(id=1, name='a')])))
    return str(tmp_path)


def _poly(x1, y1, x2, y2):
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]


def test_degenerate_and_outside_instances_are_skipped_empty_images_kept(tmp_path):
    root = _coco(tmp_path, [
        dict(category_id=1, bbox=[2, 2, 5, 5], segmentation=_poly(2, 2, 7, 7)),       # kept
        dict(category_id=1, bbox=[2, 2, 5, 5], segmentation=[[2, 2, 7, 7]]),          # 2 points
        dict(category_id=1, bbox=[40, 2, 5, 5], segmentation=_poly(40, 2, 45, 7)),    # outside
        dict(category_id=1, bbox=[25, 15, 10, 10], segmentation=_poly(25, 15, 35, 25)),  # clip
    ])
    data = CocoDataset(root, 'val', pipeline=LOAD)
    assert data.metainfo['ann_file'].endswith('instances_val2017.json')
    assert len(data) == 2  # image 2 has no annotation: a negative
    first = data[0]
    np.testing.assert_array_equal(first['gt_bboxes'], [[2, 2, 7, 7], [25, 15, 30, 20]])
    assert first['gt_masks'].shape == (2, 20, 30)
    assert data[1]['gt_bboxes'].shape == (0, 4) and data[1]['gt_masks'].shape == (0, 20, 30)
    assert len(CocoDataset(root, 'val', filter_empty_gt=True)) == 1


def test_unknown_category_names_the_file_and_annotation(tmp_path):
    root = _coco(tmp_path, [dict(category_id=1, bbox=[2, 2, 5, 5], segmentation=_poly(2, 2, 7, 7)),
                            dict(category_id=9, bbox=[2, 2, 5, 5], segmentation=_poly(2, 2, 7, 7))])
    with pytest.raises(ValueError, match="annotation 2 of image 1 in .*instances_val2017.json' "
                                         'has category_id 9'):
        CocoDataset(root, 'val')
