"""The SynthScenes dense tasks Chameleon meta-trains on, one label channel per sub-task.

Each task family (the alpha group) yields a ``[K, S, S]`` float map in [0, 1] per scene (K
channels, each a sub-task with its own bias set) and a validity mask of the same shape:

==================  ==  ===========  ======================================================
family              K   loss         channel
==================  ==  ===========  ======================================================
semseg              13  bce          binary mask of each SEMANTIC_CLASSES class
parts                6  bce          binary mask of each figure part (PART_CLASSES[1:])
saliency             1  bce          objects and figures
keypoints_semantic  13  spatial sm.  one figure joint: a unit peak at its pixel
keypoints            1  bce          all joints: Gaussian heatmaps (sigma 1 px), max-merged
depth                1  l1           depth / 20 m (sky masked)
normals              3  l1           (n + 1) / 2 of the camera-frame normal (sky masked)
edges                1  l1           semantic/instance boundaries
autoencoding         3  l1           the image's RGB (base task)
denoising            3  l1           the clean RGB; the input gets Gaussian noise (base task)
sobel                3  l1           Sobel gradient magnitude of the grey image at blur
                                     sigmas 0, 1, 2 (base task)
==================  ==  ===========  ======================================================

Task types for sampling as the official: 'base' (the self-supervised three), 'continuous'
(depth, normals, edges, keypoints) and 'categorical' (the rest).
"""
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from .render import Camera
from .scene import FIGURE, PART_CLASSES, SEMANTIC_CLASSES

JOINTS = ('head', 'l_shoulder', 'l_elbow', 'l_hand', 'l_hip', 'l_knee', 'l_foot',
          'r_shoulder', 'r_elbow', 'r_hand', 'r_hip', 'r_knee', 'r_foot')
MAX_DEPTH = 20.0
NOISE_SIGMA = 0.1    # std of the denoising task's input noise (images in [0, 1])


class TaskFamily(NamedTuple):
    name: str
    channels: int
    loss: str          # 'bce' | 'l1' | 'spatial_softmax'
    kind: str          # 'base' | 'continuous' | 'categorical'


FAMILIES = (
    TaskFamily('semseg', len(SEMANTIC_CLASSES), 'bce', 'categorical'),
    TaskFamily('parts', len(PART_CLASSES) - 1, 'bce', 'categorical'),
    TaskFamily('saliency', 1, 'bce', 'categorical'),
    TaskFamily('keypoints_semantic', len(JOINTS), 'spatial_softmax', 'categorical'),
    TaskFamily('keypoints', 1, 'bce', 'continuous'),
    TaskFamily('depth', 1, 'l1', 'continuous'),
    TaskFamily('normals', 3, 'l1', 'continuous'),
    TaskFamily('edges', 1, 'l1', 'continuous'),
    TaskFamily('autoencoding', 3, 'l1', 'base'),
    TaskFamily('denoising', 3, 'l1', 'base'),
    TaskFamily('sobel', 3, 'l1', 'base'),
)
FAMILY_INDEX = {f.name: i for i, f in enumerate(FAMILIES)}
# first sub-task (bias set) index of each family; sub-tasks are numbered family by family
FIRST_TASK = dict(zip(FAMILY_INDEX, np.cumsum([0] + [f.channels for f in FAMILIES[:-1]])))
NUM_TASKS = sum(f.channels for f in FAMILIES)


def joint_pixels(scene):
    """{joint name: (row, col) float pixel coordinates} of the scene's figure (empty without
    one); points behind the camera are left out."""
    figure = next((o for o in scene.objects if o.cls == FIGURE), None)
    if figure is None:
        return {}
    parts = {p.part: p for p in figure.primitives}
    points = {'head': parts['head'].p0}
    for side in 'lr':
        points[f'{side}_shoulder'] = parts[side + 'uarm'].p0
        points[f'{side}_elbow'] = parts[side + 'uarm'].p1
        points[f'{side}_hand'] = parts[side + 'larm'].p1
        points[f'{side}_hip'] = parts[side + 'uleg'].p0
        points[f'{side}_knee'] = parts[side + 'uleg'].p1
        points[f'{side}_foot'] = parts[side + 'lleg'].p1
    camera = Camera.for_size(scene.size)
    out = {}
    for name, p in points.items():
        x, y, z = camera.axes @ (p - camera.origin)       # right, down, forward
        if z > 0:
            out[name] = (camera.focal * y / z + scene.size / 2 - 0.5,
                         camera.focal * x / z + scene.size / 2 - 0.5)
    return out


def _keypoint_maps(scene, size):
    """([13, S, S] unit peaks at the joints' nearest pixels, [S, S] Gaussian heatmap)."""
    peaks = np.zeros((len(JOINTS), size, size), np.float32)
    heat = np.zeros((size, size), np.float32)
    rows, cols = np.mgrid[:size, :size]
    for j, name in enumerate(JOINTS):
        rc = joint_pixels(scene).get(name)
        if rc is None:
            continue
        r, c = int(round(rc[0])), int(round(rc[1]))
        if 0 <= r < size and 0 <= c < size:
            peaks[j, r, c] = 1.
            heat = np.maximum(heat, np.exp(-((rows - rc[0]) ** 2 + (cols - rc[1]) ** 2) / 2))
    return peaks, heat


def _sobel(grey, sigma):
    g = ndimage.gaussian_filter(grey, sigma) if sigma else grey
    mag = np.hypot(ndimage.sobel(g, 0), ndimage.sobel(g, 1))
    return np.clip(mag / 4., 0, 1)


def family_labels(scene, rendering):
    """{family name: (labels [K, S, S] float32 in [0, 1], mask [K, S, S] float32)}."""
    size = scene.size
    image = rendering.image.astype(np.float32) / 255
    ones = np.ones((1, size, size), np.float32)
    sky = (rendering.depth > 0).astype(np.float32)[None]
    peaks, heat = _keypoint_maps(scene, size)
    grey = image.mean(-1)
    labels = {
        'semseg': (rendering.semantic[None] == np.arange(len(SEMANTIC_CLASSES))[:, None, None]),
        'parts': (rendering.part[None] == np.arange(1, len(PART_CLASSES))[:, None, None]),
        'saliency': rendering.saliency[None],
        'keypoints_semantic': peaks,
        'keypoints': heat[None],
        'depth': np.clip(rendering.depth / MAX_DEPTH, 0, 1)[None],
        'normals': (rendering.normal.transpose(2, 0, 1) + 1) / 2 * sky,
        'edges': rendering.edge[None],
        'autoencoding': image.transpose(2, 0, 1),
        'denoising': image.transpose(2, 0, 1),
        'sobel': np.stack([_sobel(grey, s) for s in (0, 1, 2)]),
    }
    masks = {'depth': sky, 'normals': np.repeat(sky, 3, 0)}
    return {name: (value.astype(np.float32),
                   np.broadcast_to(masks.get(name, ones), value.shape).astype(np.float32))
            for name, value in labels.items()}
