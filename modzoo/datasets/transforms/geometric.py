"""Transforms that move pixels: every label moves with the image.

The labels a transform keeps aligned are the dense maps of ``DENSE_FIELDS`` ([H, W], or
[H, W, 3] for ``gt_normal``), ``gt_bboxes`` [N, 4] xyxy, ``gt_masks`` [N, H, W] (with
``gt_bboxes_labels`` [N] following the boxes). Sizes are given as (h, w), like
``img_shape``. Labels are resized by pixel-centre aligned nearest neighbour
(``resize_nearest``), so they stay on the pixels of a bilinearly resized image
(cv2's INTER_NEAREST is off by half a pixel).
"""
import math

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform

from modzoo.registry import TRANSFORMS
from modzoo.structures import DENSE_FIELDS


def _size(size, name):
    """(h, w) from an int or a pair."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f'{name} must be an int or an (h, w) pair of positive ints, '
                         f'got {size}')
    return size


def resize_nearest(arr, size, axes=(0, 1)):
    """Nearest-neighbour resize of the two ``axes`` of ``arr`` (any dtype) to size (h, w).

    Output pixel i takes input pixel floor((i + 0.5) * old / new) (pixel-centre aligned,
    like cv2.INTER_NEAREST_EXACT and PIL).
    """
    for axis, new in zip(axes, size):
        old = arr.shape[axis]
        index = np.minimum(((np.arange(new) + 0.5) * (old / new)).astype(np.int64), old - 1)
        arr = np.take(arr, index, axis=axis)
    return arr


def pad_to(arr, size, value, axes=(0, 1)):
    """Pad the two ``axes`` of ``arr`` at their end to size (h, w) with ``value``."""
    widths = [(0, 0)] * arr.ndim
    for axis, new in zip(axes, size):
        widths[axis] = (0, new - arr.shape[axis])
    return np.pad(arr, widths, constant_values=value)


def keep_instances(results, keep):
    """Keep the instances where ``keep`` [N] (bool) is True: boxes, labels and masks alike."""
    for key in ('gt_bboxes', 'gt_bboxes_labels', 'gt_masks'):
        if key in results:
            results[key] = results[key][keep]


def mask_boxes(masks):
    """Tight boxes float32 [N, 4] xyxy (end exclusive) of non-empty masks [N, H, W]."""
    rows, cols = masks.any(axis=2), masks.any(axis=1)  # [N, H], [N, W]
    x1, y1 = cols.argmax(1), rows.argmax(1)
    x2 = cols.shape[1] - cols[:, ::-1].argmax(1)
    y2 = rows.shape[1] - rows[:, ::-1].argmax(1)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32).reshape(-1, 4)


def resize_results(results, size, interpolation='bilinear', scale_depth=False):
    """Resize the image to size (h, w) and every label with it; updates ``img_shape`` and
    ``scale_factor`` ((w_scale, h_scale), mmcv's order). Instances whose mask is left
    without a pixel are dropped.

    With ``scale_depth`` the depth is divided by the scale factor (the geometric mean
    sqrt(w_scale * h_scale) when they differ): for a pinhole camera an object's image size
    is f * X / Z, so an image enlarged s times shows the scene as if it were s times
    closer. Use it for scale augmentation (InvPT's RandomScaling); leave it off to keep
    the original camera's metres (e.g. resizing for evaluation).
    """
    old_h, old_w = results['img'].shape[:2]
    new_h, new_w = size
    w_scale, h_scale = new_w / old_w, new_h / old_h
    if interpolation == 'nearest':
        results['img'] = resize_nearest(results['img'], size)
    else:
        results['img'] = mmcv.imresize(results['img'], (new_w, new_h),
                                       interpolation=interpolation)
    for key in DENSE_FIELDS:
        if key in results:
            results[key] = resize_nearest(results[key], size)
    if scale_depth and 'gt_depth' in results:
        results['gt_depth'] = (results['gt_depth'] / math.sqrt(w_scale * h_scale)).astype(
            np.float32)
    if 'gt_masks' in results:
        results['gt_masks'] = resize_nearest(results['gt_masks'], size, axes=(1, 2))
    if 'gt_bboxes' in results:
        boxes = results['gt_bboxes'] * np.array([w_scale, h_scale, w_scale, h_scale],
                                                dtype=np.float32)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, new_w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, new_h)
        results['gt_bboxes'] = boxes
        if 'gt_masks' in results:  # an instance shrunk below a pixel leaves no mask
            keep_instances(results, results['gt_masks'].any(axis=(1, 2)))
    results['img_shape'] = (new_h, new_w)
    old_scale = results.get('scale_factor', (1.0, 1.0))
    results['scale_factor'] = (old_scale[0] * w_scale, old_scale[1] * h_scale)
    return results


def crop_results(results, box):
    """Crop the image and every label to box (x1, y1, x2, y2) (pixels, end exclusive).

    Boxes are shifted and clipped; instances whose box (or mask, when there are masks) is
    left empty are dropped with their labels and masks. With masks, each kept box becomes
    its mask's tight box (mmdet's ``recompute_bbox``): clipping a box of a non-convex
    object can leave it larger than what remains of the object.
    """
    x1, y1, x2, y2 = box
    results['img'] = results['img'][y1:y2, x1:x2]
    for key in DENSE_FIELDS:
        if key in results:
            results[key] = results[key][y1:y2, x1:x2]
    if 'gt_masks' in results:
        results['gt_masks'] = results['gt_masks'][:, y1:y2, x1:x2]
    if 'gt_bboxes' in results:
        boxes = results['gt_bboxes'] - np.array([x1, y1, x1, y1], dtype=np.float32)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, x2 - x1)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, y2 - y1)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if 'gt_masks' in results:
            keep &= results['gt_masks'].any(axis=(1, 2))
        results['gt_bboxes'] = boxes
        keep_instances(results, keep)
        if 'gt_masks' in results:
            results['gt_bboxes'] = mask_boxes(results['gt_masks'])
    results['img_shape'] = results['img'].shape[:2]
    return results


@TRANSFORMS.register_module()
class Resize(BaseTransform):
    """Resize the image and its labels to ``scale`` (h, w).

    Args:
        scale (int | tuple[int, int]): target (h, w). With ``keep_ratio``, the image is
            scaled by one factor to the largest size whose long edge is at most
            max(scale) and short edge at most min(scale) (``mmcv.rescale_size``).
        keep_ratio (bool): keep the aspect ratio.
        scale_depth (bool): divide ``gt_depth`` by the scale factor (see
            ``resize_results``: right for augmentation, wrong for evaluation in metres).
        interpolation (str): image interpolation ('bilinear', 'nearest', 'bicubic', 'area');
            labels always use nearest.
    """

    def __init__(self, scale, keep_ratio=False, scale_depth=False, interpolation='bilinear'):
        self.scale = _size(scale, 'Resize scale')
        self.keep_ratio = keep_ratio
        self.scale_depth = scale_depth
        self.interpolation = interpolation

    def _target_size(self, results):
        h, w = results['img'].shape[:2]
        if not self.keep_ratio:
            return self.scale
        new_w, new_h = mmcv.rescale_size((w, h), self.scale)
        return new_h, new_w

    def transform(self, results):
        return resize_results(results, self._target_size(results), self.interpolation,
                              self.scale_depth)


@TRANSFORMS.register_module()
class RandomScale(BaseTransform):
    """Scale the image and labels by one factor drawn uniformly from ``ratio_range``.

    InvPT's RandomScaling ([0.5, 2.0]); the depth is divided by the factor
    (``scale_depth``, see ``resize_results`` for why).
    """

    def __init__(self, ratio_range=(0.5, 2.0), scale_depth=True, interpolation='bilinear'):
        low, high = ratio_range
        if not 0 < low <= high:
            raise ValueError(f'{type(self).__name__} ratio_range must satisfy 0 < low <= high, '
                             f'got {ratio_range}')
        self.ratio_range = (low, high)
        self.scale_depth = scale_depth
        self.interpolation = interpolation

    def _factor(self, h, w, ratio):
        return ratio

    def transform(self, results):
        h, w = results['img'].shape[:2]
        factor = self._factor(h, w, np.random.uniform(*self.ratio_range))
        size = max(1, round(h * factor)), max(1, round(w * factor))
        return resize_results(results, size, self.interpolation, self.scale_depth)


@TRANSFORMS.register_module()
class RandomResize(RandomScale):
    """Resize by ViTDet's ``ResizeScale``: the image is scaled by one factor so that it fits
    ``scale`` (h, w) times a ratio drawn uniformly from ``ratio_range``, keeping its aspect
    ratio; labels follow (depth unscaled).

    Large-scale jitter (ViTDet, Copy-Paste): ``RandomResize(scale=1024, ratio_range=(0.1,
    2.0))``, ``RandomCrop(1024)`` (instances that leave the crop are dropped), ``Pad(size=
    1024)``.
    """

    def __init__(self, scale, ratio_range=(0.1, 2.0), interpolation='bilinear'):
        super().__init__(ratio_range, scale_depth=False, interpolation=interpolation)
        self.scale = _size(scale, 'RandomResize scale')

    def _factor(self, h, w, ratio):
        return min(self.scale[0] * ratio / h, self.scale[1] * ratio / w)


@TRANSFORMS.register_module()
class RandomCrop(BaseTransform):
    """Crop a random ``crop_size`` (h, w) window (the whole side where the image is smaller).

    mmseg's ``cat_max_ratio``: up to 10 windows are drawn until no single class of
    ``gt_sem_seg`` (ignoring ``ignore_index``) covers ``cat_max_ratio`` or more of the
    crop; the last draw is kept otherwise. Boxes are clipped and empty ones dropped.
    """

    def __init__(self, crop_size, cat_max_ratio=1.0, ignore_index=255):
        self.crop_size = _size(crop_size, 'RandomCrop crop_size')
        self.cat_max_ratio = cat_max_ratio
        self.ignore_index = ignore_index

    def _random_box(self, h, w):
        crop_h, crop_w = min(self.crop_size[0], h), min(self.crop_size[1], w)
        y1 = np.random.randint(0, h - crop_h + 1)
        x1 = np.random.randint(0, w - crop_w + 1)
        return x1, y1, x1 + crop_w, y1 + crop_h

    def _balanced(self, seg, box):
        x1, y1, x2, y2 = box
        values, counts = np.unique(seg[y1:y2, x1:x2], return_counts=True)
        counts = counts[values != self.ignore_index]
        return len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio

    def transform(self, results):
        h, w = results['img'].shape[:2]
        box = self._random_box(h, w)
        if self.cat_max_ratio < 1.0 and 'gt_sem_seg' in results:
            for _ in range(10):
                if self._balanced(results['gt_sem_seg'], box):
                    break
                box = self._random_box(h, w)
        return crop_results(results, box)


@TRANSFORMS.register_module()
class CenterCrop(BaseTransform):
    """Crop the central ``crop_size`` (h, w) window (the whole side where smaller)."""

    def __init__(self, crop_size):
        self.crop_size = _size(crop_size, 'CenterCrop crop_size')

    def transform(self, results):
        h, w = results['img'].shape[:2]
        crop_h, crop_w = min(self.crop_size[0], h), min(self.crop_size[1], w)
        y1, x1 = (h - crop_h) // 2, (w - crop_w) // 2
        return crop_results(results, (x1, y1, x1 + crop_w, y1 + crop_h))


@TRANSFORMS.register_module()
class RandomResizedCrop(BaseTransform):
    """torchvision's RandomResizedCrop: a window of random area fraction ``scale`` and
    aspect ratio ``ratio`` (w / h, log-uniform), resized to ``size`` (h, w).

    10 tries, then a central crop with the ratio clamped to ``ratio``. Meant for
    classification; labels stay aligned, depth is not rescaled.
    """

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                 interpolation='bilinear'):
        self.size = _size(size, 'RandomResizedCrop size')
        self.scale = scale
        self.ratio = ratio
        self.interpolation = interpolation

    def _random_box(self, h, w):
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            area = h * w * np.random.uniform(*self.scale)
            aspect = math.exp(np.random.uniform(*log_ratio))
            crop_w = round(math.sqrt(area * aspect))
            crop_h = round(math.sqrt(area / aspect))
            if 0 < crop_w <= w and 0 < crop_h <= h:
                y1 = np.random.randint(0, h - crop_h + 1)
                x1 = np.random.randint(0, w - crop_w + 1)
                return x1, y1, x1 + crop_w, y1 + crop_h
        crop_w, crop_h = w, h
        if w / h < self.ratio[0]:
            crop_h = round(w / self.ratio[0])
        elif w / h > self.ratio[1]:
            crop_w = round(h * self.ratio[1])
        y1, x1 = (h - crop_h) // 2, (w - crop_w) // 2
        return x1, y1, x1 + crop_w, y1 + crop_h

    def transform(self, results):
        h, w = results['img'].shape[:2]
        results = crop_results(results, self._random_box(h, w))
        return resize_results(results, self.size, self.interpolation)


@TRANSFORMS.register_module()
class RandomFlip(BaseTransform):
    """Mirror left-right with probability ``prob``.

    The normal's x component is negated (x points right in the camera frame); boxes are
    mirrored, masks flipped. Human-part labels need no swap: the 6-part set merges left
    and right limbs. ``flip`` toggles, so two flips restore the sample.
    """

    def __init__(self, prob=0.5):
        if not 0 <= prob <= 1:
            raise ValueError(f'RandomFlip prob must be in [0, 1], got {prob}')
        self.prob = prob

    def transform(self, results):
        if np.random.rand() >= self.prob:
            results.setdefault('flip', False)
            return results
        w = results['img'].shape[1]
        for key in ('img', *DENSE_FIELDS):
            if key in results:
                results[key] = np.ascontiguousarray(mmcv.imflip(results[key], 'horizontal'))
        if 'gt_normal' in results:
            results['gt_normal'] = results['gt_normal'] * np.array([-1, 1, 1], np.float32)
        if 'gt_masks' in results:
            results['gt_masks'] = np.ascontiguousarray(results['gt_masks'][:, :, ::-1])
        if 'gt_bboxes' in results:
            boxes = results['gt_bboxes']
            results['gt_bboxes'] = np.stack(
                [w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)
        results['flip'] = not results.get('flip', False)
        return results


@TRANSFORMS.register_module()
class Pad(BaseTransform):
    """Pad bottom and right to ``size`` (h, w) or to multiples of ``size_divisor``.

    The image is padded with ``pad_val``, each dense label with its ignore value from
    ``DENSE_FIELDS`` (255, depth 0, normal 0-vector), masks with 0; boxes are unchanged.
    Sets ``pad_shape``; ``img_shape`` keeps the valid region.
    """

    def __init__(self, size=None, size_divisor=None, pad_val=0):
        if (size is None) == (size_divisor is None):
            raise ValueError('Pad needs exactly one of size and size_divisor, got '
                             f'size={size}, size_divisor={size_divisor}')
        self.size = None if size is None else _size(size, 'Pad size')
        self.size_divisor = size_divisor
        self.pad_val = pad_val

    def transform(self, results):
        h, w = results['img'].shape[:2]
        if self.size is not None:
            pad_h, pad_w = self.size
            if h > pad_h or w > pad_w:
                raise ValueError(f"Pad: image '{results.get('img_path')}' of size ({h}, {w}) "
                                 f'is larger than the pad size ({pad_h}, {pad_w})')
        else:
            pad_h = math.ceil(h / self.size_divisor) * self.size_divisor
            pad_w = math.ceil(w / self.size_divisor) * self.size_divisor

        size = (pad_h, pad_w)
        results['img'] = pad_to(results['img'], size, self.pad_val)
        for key, field in DENSE_FIELDS.items():
            if key in results:
                results[key] = pad_to(results[key], size, field['ignore'])
        if 'gt_masks' in results:
            results['gt_masks'] = pad_to(results['gt_masks'], size, 0, axes=(1, 2))
        results['pad_shape'] = (pad_h, pad_w)
        return results
