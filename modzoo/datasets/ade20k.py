"""ADE20K semantic segmentation in the ADEChallengeData2016 layout."""
import os
import os.path as osp
from functools import partial

from modzoo.registry import DATASETS
from .base import TaskDataset, check_files, read_label_png, reduce_zero_label

ADE20K_CLASSES = (
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed', 'windowpane',
    'grass', 'cabinet', 'sidewalk', 'person', 'earth', 'door', 'table', 'mountain', 'plant',
    'curtain', 'chair', 'car', 'water', 'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror',
    'rug', 'field', 'armchair', 'seat', 'fence', 'desk', 'rock', 'wardrobe', 'lamp', 'bathtub',
    'railing', 'cushion', 'base', 'box', 'column', 'signboard', 'chest of drawers', 'counter',
    'sand', 'sink', 'skyscraper', 'fireplace', 'refrigerator', 'grandstand', 'path', 'stairs',
    'runway', 'case', 'pool table', 'pillow', 'screen door', 'stairway', 'river', 'bridge',
    'bookcase', 'blind', 'coffee table', 'toilet', 'flower', 'book', 'hill', 'bench',
    'countertop', 'stove', 'palm', 'kitchen island', 'computer', 'swivel chair', 'boat', 'bar',
    'arcade machine', 'hovel', 'bus', 'towel', 'light', 'truck', 'tower', 'chandelier',
    'awning', 'streetlight', 'booth', 'television receiver', 'airplane', 'dirt track',
    'apparel', 'pole', 'land', 'bannister', 'escalator', 'ottoman', 'bottle', 'buffet',
    'poster', 'stage', 'van', 'ship', 'fountain', 'conveyer belt', 'canopy', 'washer',
    'plaything', 'swimming pool', 'stool', 'barrel', 'basket', 'waterfall', 'tent', 'bag',
    'minibike', 'cradle', 'oven', 'ball', 'food', 'step', 'tank', 'trade name', 'microwave',
    'pot', 'animal', 'bicycle', 'lake', 'dishwasher', 'screen', 'blanket', 'sculpture', 'hood',
    'sconce', 'vase', 'traffic light', 'tray', 'ashcan', 'fan', 'pier', 'crt screen', 'plate',
    'monitor', 'bulletin board', 'shower', 'radiator', 'glass', 'clock', 'flag')


def decode_ade20k(results, reduce_zero=True):
    """``gt_sem_seg`` uint8 [H, W] from the annotation png (0 -> 255, v -> v - 1)."""
    seg = read_label_png(results['ann_paths']['gt_sem_seg'])
    return dict(gt_sem_seg=reduce_zero_label(seg) if reduce_zero else seg)


@DATASETS.register_module()
class ADE20KDataset(TaskDataset):
    """ADE20K: ``images/<split>/<id>.jpg`` with ``annotations/<split>/<id>.png``.

    The png stores 0 for "other" and v >= 1 for class v - 1; with ``reduce_zero_label``
    (default, as mmseg) ``gt_sem_seg`` holds the class index with 0 -> 255 (ignored).

    Args:
        data_root (str): the ``ADEChallengeData2016`` folder.
        split (str): 'train' (folder ``training``) or 'val' (``validation``).
        reduce_zero_label (bool): see above.
        **kwargs: see ``TaskDataset``; ``metainfo=dict(classes=...)`` replaces the 150
            ADE20K classes.
    """
    METAINFO = dict(classes=ADE20K_CLASSES)
    SPLITS = dict(train='training', val='validation')

    def __init__(self, data_root, split='train', reduce_zero_label=True, **kwargs):
        self.reduce_zero_label = reduce_zero_label
        self.ann_decoder = partial(decode_ade20k, reduce_zero=reduce_zero_label)
        super().__init__(data_root, split, **kwargs)

    def load_data_list(self):
        img_dir = osp.join(self.data_root, 'images', self.SPLITS[self.split])
        ann_dir = osp.join(self.data_root, 'annotations', self.SPLITS[self.split])
        if not osp.isdir(img_dir):
            raise FileNotFoundError(f"ADE20KDataset: image folder '{img_dir}' not found "
                                    '(expected images/<split>/<id>.jpg)')
        ids = sorted(name[:-4] for name in os.listdir(img_dir) if name.endswith('.jpg'))
        if not ids:
            raise ValueError(f"ADE20KDataset: no .jpg images in '{img_dir}'")
        check_files(ann_dir, [f'{i}.png' for i in ids], 'ADE20KDataset annotations')
        return [dict(img_path=osp.join(img_dir, f'{i}.jpg'),
                     ann_paths=dict(gt_sem_seg=osp.join(ann_dir, f'{i}.png'))) for i in ids]
