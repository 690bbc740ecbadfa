"""PASCAL VOC as multi-label classification: ``<data_root>`` is ``VOCdevkit/VOC2007``."""
import os.path as osp
import xml.etree.ElementTree as ET

import numpy as np

from modzoo.registry import DATASETS
from .base import TaskDataset, check_files, read_split_file

VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
               'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
               'sheep', 'sofa', 'train', 'tvmonitor')


def read_voc_objects(xml_path):
    """[(name, difficult)] of the objects in a VOC annotation xml."""
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as error:
        raise ValueError(f"cannot parse VOC annotation '{xml_path}': {error}") from error
    objects = []
    for obj in root.iter('object'):
        name = obj.findtext('name')
        if name is None:
            raise ValueError(f"VOC annotation '{xml_path}' has an <object> without <name>")
        objects.append((name.strip(), obj.findtext('difficult', '0').strip() == '1'))
    return objects


@DATASETS.register_module()
class VOCDataset(TaskDataset):
    """Multi-label classification: ``gt_labels`` float32 [C] multi-hot of the xml objects.

    Layout: ``JPEGImages/<id>.jpg``, ``Annotations/<id>.xml``,
    ``ImageSets/Main/<split>.txt``. An object name that is not in the classes raises an
    error naming the xml.

    Args:
        data_root (str): the ``VOC2007`` (or ``VOC2012``) folder.
        split (str): 'train', 'val', 'trainval' or 'test' (the ImageSets/Main file).
        with_difficult (bool): count objects marked difficult as positives. When False
            (default) a class seen only on difficult objects is negative.
        **kwargs: see ``TaskDataset``; ``metainfo=dict(classes=...)`` replaces the 20
            VOC classes.
    """
    METAINFO = dict(classes=VOC_CLASSES)
    SPLITS = dict(train='train', val='val', trainval='trainval', test='test')

    def __init__(self, data_root, split='train', with_difficult=False, **kwargs):
        self.with_difficult = with_difficult
        super().__init__(data_root, split, **kwargs)

    def load_data_list(self):
        ids = read_split_file(
            osp.join(self.data_root, 'ImageSets', 'Main', f'{self.SPLITS[self.split]}.txt'),
            'VOCDataset')
        img_dir = osp.join(self.data_root, 'JPEGImages')
        xml_dir = osp.join(self.data_root, 'Annotations')
        check_files(img_dir, [f'{i}.jpg' for i in ids], 'VOCDataset images')
        check_files(xml_dir, [f'{i}.xml' for i in ids], 'VOCDataset annotations')
        classes = self._metainfo['classes']
        label_of = {name: index for index, name in enumerate(classes)}
        data_list = []
        for image_id in ids:
            xml_path = osp.join(xml_dir, f'{image_id}.xml')
            gt_labels = np.zeros(len(classes), dtype=np.float32)
            for name, difficult in read_voc_objects(xml_path):
                if name not in label_of:
                    raise ValueError(f"VOC annotation '{xml_path}': object class '{name}' is "
                                     f'not one of the classes {list(classes)}')
                if self.with_difficult or not difficult:
                    gt_labels[label_of[name]] = 1.0
            data_list.append(dict(img_path=osp.join(img_dir, f'{image_id}.jpg'),
                                  gt_labels=gt_labels))
        return data_list
