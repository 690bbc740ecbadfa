"""Class-incremental splits: alphabetical task splits, per-task subsets, their errors."""
import json
import os

import cv2
import numpy as np
import pytest
import torch
from mmengine.dataset import BaseDataset

from modzoo.datasets.class_incremental import (ClassSubset, dataset_classes, sample_labels,
                                               split_classes)
from modzoo.datasets.coco import CocoDataset
from modzoo.datasets.multi_task import MultiTaskDataset
from modzoo.datasets.transforms import PackTaskInputs

CLASSES = ('dog', 'cat', 'bird', 'ant', 'eel', 'fox')   # alphabetical: 3 2 1 0 4 5


def add_image(results):
    results['img'] = np.zeros((4, 4, 3), np.uint8)
    results['img_shape'] = (4, 4)
    return results


class ListDataset(BaseDataset):
    """Samples given as a list of label dicts (``gt_labels`` or ``gt_label``)."""

    def __init__(self, infos, classes=CLASSES):
        self.infos = infos
        super().__init__(metainfo=dict(classes=classes),
                         pipeline=[add_image, PackTaskInputs()])

    def load_data_list(self):
        return [dict(img_path=f'{i}.png', **info) for i, info in enumerate(self.infos)]


def multi_hot(*classes):
    labels = np.zeros(len(CLASSES), np.float32)
    labels[list(classes)] = 1
    return dict(gt_labels=labels)


def test_split_classes_takes_classes_in_alphabetical_order():
    assert split_classes(CLASSES, base=2, increment=2) == [[3, 2], [1, 0], [4, 5]]
    assert split_classes(CLASSES, base=0, increment=3) == [[3, 2, 1], [0, 4, 5]]
    assert split_classes(CLASSES, base=4, increment=1) == [[3, 2, 1, 0], [4], [5]]
    assert split_classes(CLASSES, base=6, increment=1) == [[3, 2, 1, 0, 4, 5]]


@pytest.mark.parametrize('num_classes,base,increment,tasks', [
    (80, 0, 10, 8), (80, 40, 10, 5), (20, 0, 4, 5), (20, 10, 2, 6), (100, 0, 10, 10)])
def test_paper_splits(num_classes, base, increment, tasks):
    mask = split_classes([f'c{i:03d}' for i in range(num_classes)], base, increment)
    assert len(mask) == tasks
    assert sorted(c for task in mask for c in task) == list(range(num_classes))
    assert len(mask[0]) == (base or increment)


def test_split_that_does_not_divide_says_which_numbers_do():
    classes = [f'c{i}' for i in range(11)]
    with pytest.raises(ValueError, match=r'B0-C4 does not divide 11 classes.*increments that '
                                         r'divide are \[1, 11\].*bases are \[3, 7, 11\]'):
        split_classes(classes, base=0, increment=4)
    with pytest.raises(ValueError, match=r'B12-C1 does not divide 11 classes'):
        split_classes(classes, base=12, increment=1)
    with pytest.raises(ValueError, match="appear more than once"):
        split_classes(('a', 'b', 'a'), base=1, increment=1)
    with pytest.raises(ValueError, match='increment=0'):
        split_classes(classes, base=1, increment=0)


def test_sample_labels_reads_the_data_list_through_multi_task_datasets():
    dataset = ListDataset([multi_hot(0, 4), dict(gt_label=2)])
    wrapped = MultiTaskDataset(dict(a=dict(tasks=['x'], dataset=ListDataset([multi_hot(1)])),
                                    b=dict(tasks=['x'], dataset=dataset)))
    assert sample_labels(dataset, 0).tolist() == [0, 4]
    assert sample_labels(dataset, 1).tolist() == [2]
    assert sample_labels(wrapped, 2).tolist() == [2]
    assert dataset_classes(wrapped) == CLASSES
    with pytest.raises(KeyError, match='neither gt_labels nor gt_label'):
        sample_labels(ListDataset([dict(other=1)]), 0)


def test_class_subset_keeps_images_with_a_task_class_and_zeroes_other_labels():
    dataset = ListDataset([multi_hot(0, 4), multi_hot(1), multi_hot(4, 5), multi_hot(2, 3)])
    subset = ClassSubset(dataset, classes=[4, 5])
    assert subset.indices == [0, 2] and len(subset) == 2
    assert subset.metainfo['classes'] == CLASSES
    torch.testing.assert_close(subset[0]['data_samples'].gt_labels,
                               torch.tensor([0., 0, 0, 0, 1, 0]))
    torch.testing.assert_close(subset[1]['data_samples'].gt_labels,
                               torch.tensor([0., 0, 0, 0, 1, 1]))
    # the wrapped dataset is untouched
    torch.testing.assert_close(dataset[0]['data_samples'].gt_labels,
                               torch.tensor([1., 0, 0, 0, 1, 0]))


def test_class_subset_of_single_label_data():
    dataset = ListDataset([dict(gt_label=c) for c in (0, 3, 5, 3)])
    subset = ClassSubset(dataset, classes=[3])
    assert subset.indices == [1, 3]
    assert int(subset[0]['data_samples'].gt_label) == 3


def test_class_subset_names_a_class_missing_from_the_dataset():
    dataset = ListDataset([multi_hot(0), multi_hot(1)])
    with pytest.raises(ValueError, match=r"task 2/3 of B2-C2: classes \['ant'\] have no "
                                         r'sample in ListDataset \(2 samples\)'):
        ClassSubset(dataset, classes=[0, 3], name='task 2/3 of B2-C2')


def test_coco_multilabel_counts_every_annotation(tmp_path):
    os.makedirs(tmp_path / 'train2017')
    os.makedirs(tmp_path / 'annotations')
    for name in ('1.jpg', '2.jpg'):
        cv2.imwrite(str(tmp_path / 'train2017' / name), np.zeros((8, 8, 3), np.uint8))
    box = dict(bbox=[0, 0, 4, 4], area=16, segmentation=[[0, 0, 4, 0, 4, 4]])
    coco = dict(
        images=[dict(id=1, file_name='1.jpg', height=8, width=8),
                dict(id=2, file_name='2.jpg', height=8, width=8)],
        categories=[dict(id=5, name='cat'), dict(id=7, name='ant'), dict(id=9, name='eel')],
        annotations=[dict(id=1, image_id=1, category_id=9, iscrowd=0, **box),
                     dict(id=2, image_id=1, category_id=5, iscrowd=1, **box),
                     dict(id=3, image_id=2, category_id=7, iscrowd=0,
                          **dict(box, bbox=[0, 0, 0.5, 4]))])
    with open(tmp_path / 'annotations' / 'instances_train2017.json', 'w') as f:
        json.dump(coco, f)
    dataset = CocoDataset(str(tmp_path), with_mask=False, multilabel=True,
                          pipeline=[dict(type='LoadImage'), dict(type='PackTaskInputs')])
    assert dataset.metainfo['classes'] == ('cat', 'ant', 'eel')
    # the crowd 'cat' and the half-pixel 'ant' box have no instance but are labels
    assert sample_labels(dataset, 0).tolist() == [0, 2]
    assert sample_labels(dataset, 1).tolist() == [1]
    torch.testing.assert_close(dataset[0]['data_samples'].gt_labels, torch.tensor([1., 0, 1]))
    assert 'gt_instances' not in dataset[0]['data_samples']   # no LoadTaskAnnotations
    assert 'gt_labels' not in CocoDataset(str(tmp_path), with_mask=False).get_data_info(0)
