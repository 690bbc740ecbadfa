"""ImageNet in class folders: ``<data_root>/{train,val}/<class name>/<image>``."""
import os
import os.path as osp

from modzoo.registry import DATASETS
from .base import TaskDataset

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.pgm', '.tif', '.tiff', '.webp')


def _class_folders(folder):
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())


@DATASETS.register_module()
class ImageNetDataset(TaskDataset):
    """Single-label classification from class folders; each sample has ``gt_label`` (int).

    Classes: ``metainfo=dict(classes=...)`` when given (every folder must be one of them),
    else the sorted folder names of the ``train`` folder (of the split's own folder when
    there is no ``train``), so train and val agree on the label indices even when a small
    val set lacks a class.

    Args:
        data_root (str): folder holding ``train/`` and ``val/``.
        split (str): 'train' or 'val'.
        **kwargs: see ``TaskDataset``.
    """
    SPLITS = dict(train='train', val='val')

    def load_data_list(self):
        split_dir = osp.join(self.data_root, self.SPLITS[self.split])
        if not osp.isdir(split_dir):
            raise FileNotFoundError(f"ImageNetDataset: split folder '{split_dir}' not found "
                                    "(expected one sub-folder per class with that class's "
                                    'images)')
        classes = self._metainfo.get('classes')
        if classes is None:
            train_dir = osp.join(self.data_root, self.SPLITS['train'])
            classes = _class_folders(train_dir if osp.isdir(train_dir) else split_dir)
            self._metainfo['classes'] = tuple(classes)
        label_of = {name: index for index, name in enumerate(classes)}
        data_list = []
        for folder in _class_folders(split_dir):
            if folder not in label_of:
                raise ValueError(f"ImageNetDataset: class folder '{osp.join(split_dir, folder)}'"
                                 f' is not one of the {len(classes)} classes in metainfo')
            for name in sorted(os.listdir(osp.join(split_dir, folder))):
                if name.lower().endswith(IMG_EXTENSIONS):
                    data_list.append(dict(img_path=osp.join(split_dir, folder, name),
                                          gt_label=label_of[folder]))
        if not data_list:
            raise ValueError(f"ImageNetDataset: no images ({', '.join(IMG_EXTENSIONS)}) in the "
                             f"class folders of '{split_dir}'")
        return data_list
