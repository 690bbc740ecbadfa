"""Label alignment of every transform: the image's colour encodes the labels, so after a
transform each label must still match the pixels it sits on."""
import copy

import cv2
import numpy as np
import pytest
import torch

from modzoo.datasets.transforms import (CenterCrop, LoadImage, LoadTaskAnnotations, PackTaskInputs,
                                        Pad, PhotoMetricDistortion, RandomCrop, RandomFlip,
                                        RandomResize, RandomResizedCrop, RandomScale, Resize)
from modzoo.datasets.transforms.geometric import resize_nearest
from modzoo.structures import DENSE_FIELDS, TaskDataSample

H, W = 24, 32
NUM_CLASSES = 6


def _normal_of(sem):
    """A distinct unit normal per class: normalise (c + 1, 1, 2)."""
    n = np.stack([sem + 1.0, np.ones_like(sem, float), np.full(sem.shape, 2.0)], -1)
    return (n / np.linalg.norm(n, axis=-1, keepdims=True)).astype(np.float32)


def _sample(seed=0):
    """A results dict whose image encodes every label.

    The semantic map is made of 4x4 blocks of random classes. Red = 40 * class, green =
    10 * part, blue = edge * 200; depth = class + 1 metres; normal = ``_normal_of(class)``;
    saliency = class > 2; five instances, each one block (mask, box, its block's class).
    """
    rng = np.random.default_rng(seed)
    sem = np.kron(rng.integers(0, NUM_CLASSES, (H // 4, W // 4)), np.ones((4, 4), int))
    parts = (sem + 1) % 7
    edge = (np.abs(np.diff(sem, axis=1, prepend=sem[:, :1])) > 0).astype(np.uint8)
    img = np.stack([40 * sem, 10 * parts, 200 * edge], -1).astype(np.uint8)
    masks, boxes, labels = np.zeros((5, H, W), np.uint8), [], []
    for k, block in enumerate(rng.choice((H // 4) * (W // 4), 5, replace=False)):
        y, x = 4 * (block // (W // 4)), 4 * (block % (W // 4))
        masks[k, y:y + 4, x:x + 4] = 1
        boxes.append([x, y, x + 4, y + 4])
        labels.append(sem[y, x])
    return dict(img=img, img_path='synthetic.png', img_shape=(H, W), ori_shape=(H, W),
                gt_sem_seg=sem.astype(np.uint8), gt_parts=parts.astype(np.uint8),
                gt_edge=edge, gt_saliency=(sem > 2).astype(np.uint8),
                gt_depth=(sem + 1).astype(np.float32), gt_normal=_normal_of(sem),
                gt_masks=masks, gt_bboxes=np.array(boxes, np.float32),
                gt_bboxes_labels=np.array(labels, np.int64))


def _mask_box(mask):
    """Tight xyxy box (end exclusive) of a [H, W] mask."""
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def _assert_aligned(results, depth_scale=1.0, flipped=False, box_tol=0.0):
    """Every label agrees with the image colours on the valid (non-ignore) pixels."""
    img = results['img'].astype(int)
    sem = results['gt_sem_seg'].astype(int)
    valid = sem != 255
    assert valid.any()
    np.testing.assert_array_equal(img[..., 0][valid], 40 * sem[valid])
    np.testing.assert_array_equal(img[..., 1][valid], 10 * results['gt_parts'][valid])
    np.testing.assert_array_equal(img[..., 2][valid], 200 * results['gt_edge'][valid])
    np.testing.assert_array_equal(results['gt_saliency'][valid], sem[valid] > 2)
    np.testing.assert_allclose(results['gt_depth'][valid], (sem[valid] + 1) / depth_scale,
                               rtol=1e-6)
    normal = _normal_of(sem) * (np.array([-1, 1, 1]) if flipped else 1)
    np.testing.assert_allclose(results['gt_normal'][valid], normal[valid], atol=1e-6)
    # each instance mask lies on pixels of its class, and its box frames it
    assert len(results['gt_bboxes']) == len(results['gt_masks']) == len(
        results['gt_bboxes_labels'])
    for label, mask, box in zip(results['gt_bboxes_labels'], results['gt_masks'],
                                results['gt_bboxes']):
        assert mask.any() and (sem[mask == 1] == label).all()
        np.testing.assert_allclose(box, _mask_box(mask), atol=box_tol)
    # invalid (padded) pixels carry every label's ignore value
    for key, field in DENSE_FIELDS.items():
        assert (results[key][~valid] == field['ignore']).all()


def test_resize_nearest_is_pixel_centre_aligned():
    grid = np.array([[0, 1], [2, 3]])
    np.testing.assert_array_equal(resize_nearest(grid, (4, 4)),
                                  np.kron(grid, np.ones((2, 2), int)))
    # 4 -> 2 keeps the pixel nearest each output centre: input centres 1.5 -> index 1, 3
    row = np.arange(4)[None]
    np.testing.assert_array_equal(resize_nearest(row, (1, 2)), [[1, 3]])
    masks = np.arange(8).reshape(2, 2, 2)
    np.testing.assert_array_equal(resize_nearest(masks, (4, 4), axes=(1, 2))[1],
                                  np.kron(masks[1], np.ones((2, 2), int)))


@pytest.mark.parametrize('scale_depth', [False, True])
def test_resize_keeps_labels_aligned(scale_depth):
    results = Resize((48, 64), scale_depth=scale_depth, interpolation='nearest')(_sample())
    assert results['img'].shape == (48, 64, 3) and results['img_shape'] == (48, 64)
    assert results['scale_factor'] == (2.0, 2.0)
    _assert_aligned(results, depth_scale=2.0 if scale_depth else 1.0)
    # boxes are scaled exactly: [x1, y1, x2, y2] * 2
    np.testing.assert_allclose(results['gt_bboxes'], _sample()['gt_bboxes'] * 2)


def test_resize_downscale_and_keep_ratio():
    results = Resize((12, 16), interpolation='nearest')(_sample())
    _assert_aligned(results, box_tol=1.0)
    # (h, w) = (24, 32) into long edge <= 64, short edge <= 36: factor min(64/32, 36/24) = 1.5
    results = Resize((36, 64), keep_ratio=True)(_sample())
    assert results['img'].shape[:2] == (36, 48) and results['scale_factor'] == (1.5, 1.5)


def test_resize_bilinear_labels_match_nearest_labels():
    bilinear = Resize((40, 56))(_sample())
    nearest = Resize((40, 56), interpolation='nearest')(_sample())
    for key in (*DENSE_FIELDS, 'gt_masks', 'gt_bboxes'):
        np.testing.assert_array_equal(bilinear[key], nearest[key])


def test_random_scale_divides_depth_by_the_scale():
    np.random.seed(3)
    results = RandomScale((0.5, 2.0), interpolation='nearest')(_sample())
    scale = results['scale_factor'][0]
    assert 0.5 <= scale <= 2.0
    assert results['img'].shape[:2] == (round(H * scale), round(W * scale))
    _assert_aligned(results, depth_scale=np.sqrt(np.prod(results['scale_factor'])),
                    box_tol=2 * max(scale, 1))
    kept = RandomScale((2.0, 2.0), scale_depth=False)(_sample())
    assert kept['gt_depth'].max() == _sample()['gt_depth'].max()


def test_random_flip_twice_is_identity_and_negates_normal_x():
    flip = RandomFlip(prob=1.0)
    once = flip(_sample())
    assert once['flip'] is True
    _assert_aligned(once, flipped=True)
    np.testing.assert_array_equal(once['gt_sem_seg'], _sample()['gt_sem_seg'][:, ::-1])
    np.testing.assert_array_equal(once['gt_normal'][..., 0],
                                  -_sample()['gt_normal'][:, ::-1, 0])
    twice = flip(copy.deepcopy(once))
    assert twice['flip'] is False
    original = _sample()
    for key in ('img', *DENSE_FIELDS, 'gt_masks', 'gt_bboxes'):
        np.testing.assert_array_equal(twice[key], original[key])
    # a box [1, 2, 4, 5] in a 10-wide image mirrors to [10 - 4, 2, 10 - 1, 5]
    boxed = dict(img=np.zeros((8, 10, 3), np.uint8), gt_bboxes=np.array([[1, 2, 4, 5.]]))
    np.testing.assert_array_equal(flip(boxed)['gt_bboxes'], [[6, 2, 9, 5]])
    assert RandomFlip(prob=0.0)(_sample())['flip'] is False


def test_random_crop_keeps_alignment_and_clips_boxes():
    np.random.seed(0)
    results = RandomCrop((16, 20))(_sample())
    assert results['img'].shape[:2] == (16, 20) and results['img_shape'] == (16, 20)
    _assert_aligned(results)
    # hand case: crop (x1, y1, x2, y2) = (2, 2, 6, 6) of a 10 x 10 image
    crop = RandomCrop((4, 4))
    crop._random_box = lambda h, w: (2, 2, 6, 6)
    boxes = np.array([[0, 0, 3, 3], [7, 7, 9, 9], [4, 1, 9, 5], [1, 4, 3, 5]], np.float32)
    masks = np.zeros((4, 10, 10), np.uint8)
    for mask, (x1, y1, x2, y2) in zip(masks, boxes.astype(int)):
        mask[y1:y2, x1:x2] = 1
    masks[3, 4, 2] = 0  # only its pixel at x = 1 (outside the crop) is on
    results = crop(dict(img=np.zeros((10, 10, 3), np.uint8), gt_bboxes=boxes,
                        gt_bboxes_labels=np.array([0, 1, 2, 3]), gt_masks=masks))
    # instance 1 lies outside the crop; instance 3 keeps a box [0, 2, 1, 3] but no mask
    # pixel: both are dropped with their labels and masks
    np.testing.assert_array_equal(results['gt_bboxes'], [[0, 0, 1, 1], [2, 0, 4, 3]])
    np.testing.assert_array_equal(results['gt_bboxes_labels'], [0, 2])
    np.testing.assert_array_equal(results['gt_masks'], masks[[0, 2], 2:6, 2:6])


def test_random_crop_cat_max_ratio_retries():
    """mmseg's rule: redraw (up to 10 times) while one class covers >= cat_max_ratio."""
    sem = np.zeros((8, 8), np.uint8)
    sem[:, 6:] = 1
    sem[0, 0] = 255  # ignored pixels do not count
    crop = RandomCrop((4, 4), cat_max_ratio=0.75)
    draws = iter([(0, 0, 4, 4),    # all class 0 (one class): rejected
                  (3, 0, 7, 4),    # class 1 on 1 of 4 columns: 12/16 = 0.75, rejected
                  (4, 4, 8, 8),    # class 1 on half: accepted
                  (0, 4, 4, 8)])
    crop._random_box = lambda h, w: next(draws)
    results = crop(dict(img=np.zeros((8, 8, 3), np.uint8), gt_sem_seg=sem))
    np.testing.assert_array_equal(results['gt_sem_seg'], sem[4:8, 4:8])
    # when no draw is balanced, the 11th draw is kept
    count = []
    crop._random_box = lambda h, w: count.append(1) or (0, 0, 4, 4)
    crop(dict(img=np.zeros((8, 8, 3), np.uint8), gt_sem_seg=sem))
    assert len(count) == 11


def test_center_crop_and_random_resized_crop():
    results = CenterCrop((10, 12))(_sample())
    np.testing.assert_array_equal(results['gt_sem_seg'], _sample()['gt_sem_seg'][7:17, 10:22])
    _assert_aligned(results)
    np.random.seed(1)
    results = RandomResizedCrop((20, 20), scale=(0.3, 1.0), interpolation='nearest')(_sample())
    assert results['img'].shape == (20, 20, 3)
    _assert_aligned(results, box_tol=4.0)


def test_pad_fills_each_label_with_its_ignore_value():
    results = Pad(size=(30, 40))(_sample())
    assert results['img'].shape == (30, 40, 3)
    assert results['pad_shape'] == (30, 40) and results['img_shape'] == (H, W)
    assert (results['img'][H:] == 0).all() and (results['img'][:, W:] == 0).all()
    assert (results['gt_depth'][H:] == 0).all() and (results['gt_normal'][:, W:] == 0).all()
    assert (results['gt_sem_seg'][H:] == 255).all() and (results['gt_masks'][:, H:] == 0).all()
    _assert_aligned(results)
    assert Pad(size_divisor=16)(_sample())['pad_shape'] == (32, 32)
    with pytest.raises(ValueError, match=r"synthetic.png' of size \(24, 32\) is larger than "
                                         r'the pad size \(16, 40\)'):
        Pad(size=(16, 40))(_sample())
    with pytest.raises(ValueError, match='exactly one of size and size_divisor'):
        Pad()


def test_train_pipeline_keeps_every_label_aligned():
    """RandomScale -> RandomCrop -> RandomFlip -> Pad, as the dense-task configs chain them."""
    pipeline = [RandomScale((0.5, 2.0), interpolation='nearest'), RandomCrop((20, 20)),
                RandomFlip(0.5), Pad(size=(20, 24))]
    for seed in range(8):
        np.random.seed(seed)
        results = _sample(seed)
        for transform in pipeline:
            results = transform(results)
        scale = np.sqrt(np.prod(results['scale_factor']))
        _assert_aligned(results, depth_scale=scale, flipped=results['flip'],
                        box_tol=2 * max(scale, 1))


def test_large_scale_jitter_keeps_instances_aligned():
    """RandomResize (ratio 0.1-2) -> RandomCrop -> RandomFlip -> Pad: ViTDet's LSJ. Every
    kept mask still lies on its class, its box is its tight box within the resize's pixel,
    and boxes, labels and masks stay in step as instances are dropped."""
    pipeline = [RandomResize((24, 32), (0.1, 2.0), interpolation='nearest'),
                RandomCrop((24, 32)), RandomFlip(0.5), Pad(size=(24, 32))]
    counts = set()
    for seed in range(12):
        np.random.seed(seed)
        results = _sample(seed)
        for transform in pipeline:
            results = transform(results)
        assert results['img'].shape[:2] == (24, 32)
        _assert_aligned(results, flipped=results['flip'],
                        box_tol=max(results['scale_factor'][0], 1))
        counts.add(len(results['gt_bboxes']))
    assert len(counts) > 1  # some draws dropped instances


def test_crop_gives_the_tight_box_of_what_remains_of_a_mask():
    """An L-shaped object cut by the crop: its box is the remaining mask's tight box, not the
    clipped original box."""
    mask = np.zeros((1, 10, 10), np.uint8)
    mask[0, 0:8, 0:2] = 1   # vertical bar
    mask[0, 6:8, 0:8] = 1   # foot
    crop = RandomCrop((5, 10))
    crop._random_box = lambda h, w: (0, 0, 10, 5)  # keeps only the bar's top
    results = crop(dict(img=np.zeros((10, 10, 3), np.uint8), gt_masks=mask,
                        gt_bboxes=np.array([[0, 0, 8, 8]], np.float32),
                        gt_bboxes_labels=np.array([1])))
    np.testing.assert_array_equal(results['gt_bboxes'], [[0, 0, 2, 5]])
    shrunk = Resize((1, 1))(dict(img=np.zeros((10, 10, 3), np.uint8), gt_masks=mask,
                                 gt_bboxes=np.array([[0, 0, 8, 8]], np.float32),
                                 gt_bboxes_labels=np.array([1])))
    assert len(shrunk['gt_bboxes']) == len(shrunk['gt_masks']) == len(
        shrunk['gt_bboxes_labels']) == 0  # the 1-pixel image misses the mask: dropped


def test_photometric_distortion_changes_the_image_only():
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 255
    distort = PhotoMetricDistortion.distort
    # hue +60 (OpenCV units, 120 degrees) turns pure red into pure green
    np.testing.assert_array_equal(distort(red, hue=60)[0, 0], [0, 255, 0])
    # saturation x0 gives grey (equal channels); brightness and contrast clip at 255
    grey = distort(np.array([[[200, 100, 50]]], np.uint8), saturation=0.0)
    assert len(set(grey[0, 0].tolist())) == 1
    np.testing.assert_array_equal(distort(np.array([[[250, 10, 100]]], np.uint8),
                                          brightness=10.0)[0, 0], [255, 20, 110])
    np.testing.assert_array_equal(distort(np.array([[[100, 200, 0]]], np.uint8),
                                          contrast=2.0)[0, 0], [200, 255, 0])
    np.random.seed(0)
    transform = PhotoMetricDistortion()
    params = transform.random_params()
    assert params['hue'] is None or -18 <= params['hue'] < 18
    original = _sample()
    results = transform(_sample())
    assert results['img'].dtype == np.uint8 and results['img'].shape == (H, W, 3)
    for key in (*DENSE_FIELDS, 'gt_masks', 'gt_bboxes'):
        np.testing.assert_array_equal(results[key], original[key])


def test_pack_task_inputs_layouts():
    results = RandomFlip(prob=1.0)(Pad(size=(28, 32))(_sample()))  # flipped views too
    results.update(gt_label=3, gt_labels=np.array([0, 1, 1], np.float32), gt_text=['a b'],
                   sample_idx=5, tasks=('depth', ))
    packed = PackTaskInputs()(results)
    inputs, sample = packed['inputs'], packed['data_samples']
    assert isinstance(sample, TaskDataSample)
    assert inputs.dtype == torch.uint8 and inputs.shape == (3, 28, 32)
    assert torch.equal(inputs, torch.from_numpy(results['img'].copy()).permute(2, 0, 1))
    assert sample.gt_label.dtype == torch.long and sample.gt_label.item() == 3
    assert sample.gt_labels.dtype == torch.float32 and sample.gt_labels.tolist() == [0, 1, 1]
    for key in ('gt_sem_seg', 'gt_parts', 'gt_edge', 'gt_saliency'):
        assert sample.get(key).dtype == torch.long and sample.get(key).shape == (28, 32)
    assert sample.gt_depth.dtype == torch.float32 and sample.gt_depth.shape == (28, 32)
    assert sample.gt_normal.shape == (3, 28, 32)
    assert torch.equal(sample.gt_normal[:, 5, 7], torch.from_numpy(results['gt_normal'][5, 7]))
    instances = sample.gt_instances
    assert instances.bboxes.dtype == torch.float32 and instances.bboxes.shape[1] == 4
    assert instances.labels.dtype == torch.long
    assert instances.masks.dtype == torch.uint8 and instances.masks.shape[1:] == (28, 32)
    assert sample.gt_text == ['a b']
    assert sample.metainfo['img_shape'] == (H, W) and sample.pad_shape == (28, 32)
    assert sample.flip is True and sample.tasks == ('depth', ) and sample.sample_idx == 5
    unpadded = PackTaskInputs()(dict(img=np.zeros((4, 6, 3), np.uint8), img_shape=(4, 6)))
    assert unpadded['data_samples'].pad_shape == (4, 6)


def test_load_image_is_rgb_and_names_a_corrupt_file(tmp_path):
    bgr = np.zeros((5, 7, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / 'red.png'), bgr)
    results = LoadImage()(dict(img_path=str(tmp_path / 'red.png')))
    assert results['img_shape'] == results['ori_shape'] == (5, 7)
    np.testing.assert_array_equal(results['img'][0, 0], [255, 0, 0])
    (tmp_path / 'broken.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
    with pytest.raises(OSError, match="cannot decode image file '.*broken.jpg'"):
        LoadImage()(dict(img_path=str(tmp_path / 'broken.jpg')))
    with pytest.raises(FileNotFoundError, match='missing.jpg'):
        LoadImage()(dict(img_path=str(tmp_path / 'missing.jpg')))


def test_load_task_annotations_checks_sizes():
    def decoder(results):
        return dict(gt_depth=np.ones((4, 4), np.float32))

    results = dict(img=np.zeros((4, 6, 3), np.uint8), img_path='a.png', ann_decoder=decoder,
                   ann_paths=dict(gt_depth='depth/a.npy'))
    with pytest.raises(ValueError, match=r"gt_depth read from 'depth/a.npy' has size \(4, 4\) "
                                         r"\(H, W\) but its image 'a.png' has size \(4, 6\)"):
        LoadTaskAnnotations()(results)
    results = dict(img=np.zeros((4, 4, 3), np.uint8), img_path='a.png', ann_decoder=decoder)
    assert LoadTaskAnnotations()(results)['gt_depth'].shape == (4, 4)
    assert 'ann_decoder' not in results
    passthrough = dict(img=np.zeros((4, 4, 3), np.uint8), gt_label=1)
    assert LoadTaskAnnotations()(passthrough) is passthrough
    with pytest.raises(KeyError, match='put LoadImage before it'):
        LoadTaskAnnotations()(dict(img_path='a.png', ann_decoder=decoder))
