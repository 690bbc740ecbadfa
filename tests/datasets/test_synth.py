"""SynthScenes: rendering geometry, every written format, determinism, atomic output."""
import dataclasses
import json
import os
import os.path as osp
import subprocess
import sys
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest
import scipy.io
from mmengine.config import Config
from pycocotools.coco import COCO

from modzoo.datasets.synth import INSTANCE_CLASSES, OBJECT_CLASSES, PART_CLASSES, SEMANTIC_CLASSES
from modzoo.datasets.synth import generate as generate_module
from modzoo.datasets.synth import generate_synth_scenes, make_scene
from modzoo.datasets.synth.captions import describe
from modzoo.datasets.synth.render import render
from modzoo.datasets.synth.scene import (CAMERA_HEIGHT, CAMERA_PITCH_DEG, FIGURE, FOV_DEG,
                                         Primitive, Scene, SceneObject)
from modzoo.datasets.synth.writers import NYUD_MAX_DEPTH

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SIZE, NUM_TRAIN, NUM_VAL, SEED = 40, 6, 4, 1
IDS = [f'{i + 1:06d}' for i in range(NUM_TRAIN + NUM_VAL)]
SPLIT_IDS = {'train': IDS[:NUM_TRAIN], 'val': IDS[NUM_TRAIN:]}


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    """A small SynthScenes set, and the (scene, rendering) of each of its images by id."""
    root = str(tmp_path_factory.mktemp('synth') / 'synth')
    generate_synth_scenes(root, NUM_TRAIN, NUM_VAL, size=SIZE, seed=SEED, workers=1,
                          progress=False)
    scenes = {sid: make_scene(SEED, i, SIZE) for i, sid in enumerate(IDS)}
    return root, scenes


def read(path):
    """An image file as written: [H, W] or RGB [H, W, 3]."""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img[..., ::-1] if img.ndim == 3 else img


def tree(root):
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            with open(osp.join(folder, name), 'rb') as f:
                files[osp.relpath(osp.join(folder, name), root)] = f.read()
    return files


def test_deterministic_whatever_the_workers(synth, tmp_path):
    root, _ = synth
    again = generate_synth_scenes(str(tmp_path / 'again'), NUM_TRAIN, NUM_VAL, size=SIZE,
                                  seed=SEED, workers=2, progress=False)
    first, second = tree(root), tree(again)
    assert sorted(first) == sorted(second)
    assert all(first[name] == second[name] for name in first)
    other = make_scene(SEED + 1, 0, SIZE)[1].image
    assert not np.array_equal(other, make_scene(SEED, 0, SIZE)[1].image)


def test_scene_pool_statistics():
    scenes = [make_scene(0, i, 32) for i in range(60)]
    counts = [len(scene.objects) for scene, _ in scenes]
    assert min(counts) >= 1 and max(counts) <= 4
    with_figure = np.mean([any(o.cls == FIGURE for o in scene.objects) for scene, _ in scenes])
    assert 0.2 <= with_figure <= 0.55
    for scene, rendering in scenes:   # hidden objects were left out
        pixels = np.bincount(rendering.instance.ravel(), minlength=len(scene.objects) + 1)
        assert pixels[1:].min() >= 4


def camera_frame(size):
    """Focal (px), camera centre [3] and [3, 3] rows right, down, forward (world)."""
    p = np.radians(CAMERA_PITCH_DEG)
    axes = np.array([[1, 0, 0], [0, -np.cos(p), -np.sin(p)], [0, -np.sin(p), np.cos(p)]])
    return size / 2 / np.tan(np.radians(FOV_DEG) / 2), np.array([0, CAMERA_HEIGHT, 0]), axes


def world_points(depth):
    """[S, S, 3] world points of a depth map [S, S] (optical-axis metres)."""
    size = depth.shape[0]
    focal, centre, axes = camera_frame(size)
    c = (np.arange(size) + 0.5 - size / 2) / focal
    rows, cols = np.meshgrid(c, c, indexing='ij')
    cam = np.stack([cols, rows, np.ones_like(rows)], -1) * depth[..., None]
    return centre + cam @ axes


def to_camera_normal(n_world):
    """World normals [..., 3] -> the SynthScenes convention (x right, y down, z to camera)."""
    _, _, (right, down, forward) = camera_frame(1)
    return np.stack([n_world @ right, n_world @ down, -(n_world @ forward)], -1)


def test_ground_depth_and_normal_are_the_plane_analytic(synth):
    _, scenes = synth
    focal, _, _ = camera_frame(SIZE)
    p = np.radians(CAMERA_PITCH_DEG)
    y = (np.arange(SIZE) + 0.5 - SIZE / 2) / focal
    plane_depth = np.repeat((CAMERA_HEIGHT / (y * np.cos(p) + np.sin(p)))[:, None], SIZE, 1)
    for _, rendering in scenes.values():
        ground = rendering.semantic == 1
        assert ground.sum() > SIZE
        np.testing.assert_allclose(rendering.depth[ground], plane_depth[ground], rtol=1e-5)
        np.testing.assert_allclose(rendering.normal[ground],
                                   np.broadcast_to([0, -np.cos(p), np.sin(p)],
                                                   (ground.sum(), 3)), atol=1e-6)
        sky = rendering.depth == 0
        assert np.all(rendering.normal[sky] == 0) and np.all(rendering.semantic[sky] == 0)


def _shape_scene(**kw):
    """One object of each shape, hand-placed, no noise, light from straight above."""
    colour = np.array([0.5, 0.5, 0.5])
    yaw = np.radians(30)
    box_axes = np.array([[np.cos(yaw), 0, -np.sin(yaw)], [0, 1, 0], [np.sin(yaw), 0, np.cos(yaw)]])
    prims = [
        ('red_sphere', Primitive('sphere', np.array([-1.3, 0.6, 5.0]), colour, radius=0.6)),
        ('blue_box', Primitive('box', np.array([0.2, 0.5, 6.0]), colour, axes=box_axes,
                               half=np.array([0.6, 0.5, 0.4]))),
        ('green_cylinder', Primitive('cylinder', np.array([1.6, 0, 5.0]), colour, radius=0.4,
                                     p1=np.array([1.6, 1.2, 5.0]))),
        ('yellow_cone', Primitive('cone', np.array([-0.3, 0, 3.5]), colour, radius=0.4,
                                  p1=np.array([-0.3, 1.0, 3.5]))),
        ('purple_capsule', Primitive('capsule', np.array([0.5, 0.3, 3.2]), colour, radius=0.3,
                                     p1=np.array([1.3, 0.3, 3.9]))),
    ]
    objects = tuple(SceneObject(cls, (p, ), True, (p.p0[0], p.p0[2], 1.0)) for cls, p in prims)
    args = dict(size=64, objects=objects, light=np.array([0.0, 1.0, 0.0]), ambient=0.4,
                ground_tone='gray', ground_colour=np.array([0.6, 0.6, 0.6]), checker=1e4,
                background='sky', background_colours=(colour, colour), wall_distance=np.inf,
                noise_seed=0, noise_sigma=0.0)
    return Scene(**{**args, **kw})


def surface_distance(prim, x):
    """A function of points x [N, 3] that is 0 on the primitive's surface (> 0 outside)."""
    if prim.kind == 'sphere':
        return np.linalg.norm(x - prim.p0, axis=1) - prim.radius
    if prim.kind == 'box':
        return np.max(np.abs((x - prim.p0) @ prim.axes.T) - prim.half, axis=1)
    if prim.kind == 'capsule':
        ab = prim.p1 - prim.p0
        s = np.clip((x - prim.p0) @ ab / (ab @ ab), 0, 1)
        return np.linalg.norm(x - prim.p0 - s[:, None] * ab, axis=1) - prim.radius
    radial = np.linalg.norm((x - prim.p0)[:, [0, 2]], axis=1)   # vertical axes
    height = prim.p1[1] - prim.p0[1]
    y = x[:, 1] - prim.p0[1]
    if prim.kind == 'cylinder':
        return np.maximum(radial - prim.radius, np.abs(y - height / 2) - height / 2)
    return np.maximum(radial - prim.radius * (height - y) / height, -y)


def test_every_shape_hits_its_surface_with_its_normal():
    scene = _shape_scene()
    rendering = render(scene)
    points = world_points(rendering.depth.astype(np.float64))
    for k, obj in enumerate(scene.objects):
        prim = obj.primitives[0]
        on = rendering.instance == k + 1
        assert on.sum() > 30, obj.cls
        x = points[on]
        np.testing.assert_allclose(surface_distance(prim, x), 0, atol=1e-5, err_msg=obj.cls)
        eps = 1e-5   # the normal is the gradient of the surface function
        grad = np.stack([surface_distance(prim, x + eps * e) - surface_distance(prim, x - eps * e)
                         for e in np.eye(3)], -1)
        expected = to_camera_normal(grad / np.linalg.norm(grad, axis=1, keepdims=True))
        cos = np.sum(expected * rendering.normal[on], axis=1)
        assert cos.min() > 0.9999, obj.cls
        assert np.all(np.abs(np.linalg.norm(rendering.normal[on], axis=1) - 1) < 1e-5)
        np.testing.assert_array_equal(rendering.semantic[on], SEMANTIC_CLASSES.index(obj.cls))


def test_shading_and_cast_shadows():
    scene = _shape_scene()
    rendering = render(scene)
    points = world_points(rendering.depth.astype(np.float64))
    ground = rendering.semantic == 1
    sphere = scene.objects[0].primitives[0]
    under = np.hypot(points[..., 0] - sphere.p0[0], points[..., 2] - sphere.p0[2])
    # light from straight above: the ground (one checker square where x < 0) is fully lit
    # except in the sphere's disc-shaped shadow, where only the ambient term (0.4) is left
    square = ground & (points[..., 0] < 0)
    shadow = square & (under < sphere.radius * 0.95)
    lit = square & (under > sphere.radius * 1.05)
    assert shadow.sum() > 5 and lit.sum() > 5
    assert np.ptp(rendering.image[lit]) == 0
    assert np.all(np.abs(rendering.image[shadow] - 0.4 * rendering.image[lit][0]) <= 1)
    # Lambert on the sphere: albedo * (ambient + (1 - ambient) * max(n . up, 0))
    on = rendering.instance == 1
    n_up = (points[on][:, 1] - sphere.p0[1]) / sphere.radius
    expected = 0.5 * (0.4 + 0.6 * np.maximum(n_up, 0)) * 255
    np.testing.assert_allclose(rendering.image[on][:, 0], expected, atol=1.5)


def test_captions_name_colours_shapes_sizes_and_positions():
    scene = _shape_scene()
    captions = describe(scene, render(scene))
    assert captions[:2] == [
        '5 objects on a gray checkered ground under a blue sky.',
        'From left to right: a large red sphere, a large yellow cone, a large blue box, '
        'a large purple capsule and a large green cylinder.']
    small_cylinder = dataclasses.replace(scene.objects[2], large=False)
    two = dataclasses.replace(scene, objects=(scene.objects[0], small_cylinder))
    assert describe(two, render(two)) == [
        'Two objects on a gray checkered ground under a blue sky.',
        'From left to right: a large red sphere and a small green cylinder.',
        'A large red sphere is left of a small green cylinder.']
    one = dataclasses.replace(scene, objects=(small_cylinder, ))
    assert describe(one, render(one))[1:] == [
        'A small green cylinder stands on the right of the image.',
        'A small green cylinder is far from the camera.']


def test_imagenet_coco_ade_images_and_labels(synth):
    root, scenes = synth
    for split, ids in SPLIT_IDS.items():
        coco_split = {'train': 'train2017', 'val': 'val2017'}[split]
        ade_split = {'train': 'training', 'val': 'validation'}[split]
        assert sorted(os.listdir(osp.join(root, 'imagenet', split))) == sorted(INSTANCE_CLASSES)
        for sid in ids:
            scene, rendering = scenes[sid]
            pixels = {cls: 0 for cls in INSTANCE_CLASSES}
            for k, obj in enumerate(scene.objects):
                pixels[obj.cls] += int((rendering.instance == k + 1).sum())
            label = max(INSTANCE_CLASSES, key=lambda c: (pixels[c], -INSTANCE_CLASSES.index(c)))
            img = read(osp.join(root, 'imagenet', split, label, f'{sid}.JPEG'))
            assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
            assert np.abs(img.astype(int) - rendering.image).mean() < 8   # JPEG
            for path in (f'coco/{coco_split}/{sid}.jpg', f'ade20k/images/{ade_split}/{sid}.jpg',
                         f'pascal_context/JPEGImages/{sid}.jpg',
                         f'voc/VOCdevkit/VOC2007/JPEGImages/{sid}.jpg'):
                assert np.array_equal(read(osp.join(root, path)), img), path
            ade = read(osp.join(root, f'ade20k/annotations/{ade_split}/{sid}.png'))
            assert ade.dtype == np.uint8 and ade.shape == (SIZE, SIZE)
            np.testing.assert_array_equal(ade, rendering.semantic + 1)


def test_nyud_layout(synth):
    root, scenes = synth
    nyud = osp.join(root, 'nyud')
    for split, ids in SPLIT_IDS.items():
        with open(osp.join(nyud, 'gt_sets', f'{split}.txt')) as f:
            assert f.read().split() == ids
    for sid, (_, rendering) in scenes.items():
        np.testing.assert_array_equal(read(osp.join(nyud, 'images', f'{sid}.png')),
                                      rendering.image)
        seg = read(osp.join(nyud, 'segmentation', f'{sid}.png'))
        assert seg.dtype == np.uint8 and seg.min() >= 1 and seg.max() <= len(SEMANTIC_CLASSES)
        np.testing.assert_array_equal(seg - 1, rendering.semantic)
        depth = np.load(osp.join(nyud, 'depth', f'{sid}.npy'))
        assert depth.dtype == np.float32 and depth.shape == (SIZE, SIZE)
        # a depth sensor's range: nothing beyond NYUD_MAX_DEPTH
        np.testing.assert_array_equal(
            depth, np.where(rendering.depth <= NYUD_MAX_DEPTH, rendering.depth, 0))
        png = read(osp.join(nyud, 'normals', f'{sid}.png'))
        assert png.dtype == np.uint8 and png.shape == (SIZE, SIZE, 3)
        valid = rendering.depth > 0  # everything but the sky has a normal
        assert np.all(png[~valid] == 0)
        decoded = png[valid] * (2 / 255) - 1
        assert np.abs(decoded - rendering.normal[valid]).max() <= 1 / 255 + 1e-6
        edge = read(osp.join(nyud, 'edge', f'{sid}.png'))
        assert set(np.unique(edge)) <= {0, 255}
        np.testing.assert_array_equal(edge // 255, rendering.edge)


def test_edges_lie_on_label_boundaries(synth):
    _, scenes = synth
    for scene, rendering in scenes.values():
        key = rendering.semantic.astype(np.int64) * 100 + rendering.instance
        padded = np.pad(key, 1, mode='edge')
        neighbours = [padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]
        on_boundary = np.any([n != key for n in neighbours], axis=0)
        edge = rendering.edge.astype(bool)
        assert edge.any() and not np.any(edge & ~on_boundary)
        # every label change between 4-neighbours has an edge pixel on one side of it
        for a, b, ea, eb in ((key[:-1], key[1:], edge[:-1], edge[1:]),
                             (key[:, :-1], key[:, 1:], edge[:, :-1], edge[:, 1:])):
            assert np.all((ea | eb)[a != b])
        np.testing.assert_array_equal(rendering.saliency, rendering.semantic >= 2)


def test_coco_instances_and_captions(synth):
    root, scenes = synth
    for split, ids in SPLIT_IDS.items():
        coco_split = {'train': 'train2017', 'val': 'val2017'}[split]
        coco = COCO(osp.join(root, 'coco/annotations', f'instances_{coco_split}.json'))
        cats = {c['id']: c['name'] for c in coco.loadCats(coco.getCatIds())}
        assert [cats[i] for i in sorted(cats)] == list(INSTANCE_CLASSES)
        assert sorted(coco.getImgIds()) == [int(i) for i in ids]
        with open(osp.join(root, 'coco/annotations', f'captions_{coco_split}.json')) as f:
            captions = json.load(f)
        for sid in ids:
            scene, rendering = scenes[sid]
            img = coco.loadImgs(int(sid))[0]
            assert (img['file_name'], img['height'], img['width']) == (f'{sid}.jpg', SIZE, SIZE)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=int(sid)))
            assert len(anns) == len(scene.objects)
            for k, (ann, obj) in enumerate(zip(anns, scene.objects)):
                mask = rendering.instance == k + 1
                assert cats[ann['category_id']] == obj.cls and ann['iscrowd'] == 0
                np.testing.assert_array_equal(coco.annToMask(ann), mask)
                ys, xs = np.nonzero(mask)
                assert ann['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                       ys.max() - ys.min() + 1]
                assert ann['area'] == mask.sum()
            texts = [a['caption'] for a in captions['annotations'] if a['image_id'] == int(sid)]
            assert len(texts) >= 2
            for obj in scene.objects:
                words = 'figure' if obj.cls == FIGURE else f'{obj.colour_name} {obj.shape}'
                assert words in ' '.join(texts)
    assert len({a['id'] for a in captions['annotations']}) == len(captions['annotations'])


def test_voc_annotations(synth):
    root, scenes = synth
    voc = osp.join(root, 'voc/VOCdevkit/VOC2007')
    for split, ids in SPLIT_IDS.items():
        with open(osp.join(voc, 'ImageSets/Main', f'{split}.txt')) as f:
            assert f.read().split() == ids
    for sid, (scene, rendering) in scenes.items():
        ann = ET.parse(osp.join(voc, 'Annotations', f'{sid}.xml')).getroot()
        assert ann.findtext('filename') == f'{sid}.jpg'
        assert (int(ann.findtext('size/width')), int(ann.findtext('size/height'))) == (SIZE,
                                                                                       SIZE)
        objects = ann.findall('object')
        assert [o.findtext('name') for o in objects] == [o.cls for o in scene.objects]
        for k, obj in enumerate(objects):
            ys, xs = np.nonzero(rendering.instance == k + 1)
            box = [int(obj.findtext(f'bndbox/{t}')) for t in ('xmin', 'ymin', 'xmax', 'ymax')]
            assert box == [xs.min() + 1, ys.min() + 1, xs.max() + 1, ys.max() + 1]
            assert obj.findtext('difficult') == '0' and obj.findtext('truncated') in '01'
            if 1 < box[0] and box[2] < SIZE and 1 < box[1] and box[3] < SIZE:
                assert obj.findtext('truncated') == '0'


def test_pascal_context_files(synth):
    root, scenes = synth
    pc = osp.join(root, 'pascal_context')
    part_index = {'head': 1, 'torso': 2, 'luarm': 3, 'ruarm': 3, 'llarm': 4, 'rlarm': 4,
                  'luleg': 5, 'ruleg': 5, 'llleg': 6, 'rlleg': 6}
    figures = 0
    for sid, (scene, rendering) in scenes.items():
        semseg = read(osp.join(pc, 'semseg/pascal-context', f'{sid}.png'))
        np.testing.assert_array_equal(semseg, rendering.semantic)
        label_map = scipy.io.loadmat(osp.join(pc, 'pascal-context/trainval', f'{sid}.mat'))
        assert label_map['LabelMap'].dtype == np.uint16
        np.testing.assert_array_equal(label_map['LabelMap'], rendering.semantic)
        sal = read(osp.join(pc, 'sal_distill', f'{sid}.png'))
        np.testing.assert_array_equal(sal, (rendering.semantic >= 2) * 255)
        np.testing.assert_array_equal(read(osp.join(pc, 'normals_distill', f'{sid}.png')),
                                      read(osp.join(root, 'nyud/normals', f'{sid}.png')))
        # PASCAL-Part: indexed as the ASTMT/InvPT loader does, anno[0][0][1][0] = objects
        anno = scipy.io.loadmat(osp.join(pc, 'human_parts', f'{sid}.mat'))['anno']
        assert anno.dtype.names == ('imname', 'objects')
        objects = anno[0][0][1][0]
        people = [k for k, o in enumerate(scene.objects) if o.cls == FIGURE]
        assert len(objects) == len(people)
        parts = np.zeros((SIZE, SIZE), np.uint8)
        for obj, k in zip(objects, people):
            figures += 1
            assert obj.dtype.names == ('class', 'class_ind', 'mask', 'parts')
            assert obj['class'][0] == 'person' and obj['class_ind'][0][0] == 15
            assert obj['mask'].dtype == np.uint8 and obj['mask'].shape == (SIZE, SIZE)
            np.testing.assert_array_equal(obj['mask'], rendering.instance == k + 1)
            union = np.zeros((SIZE, SIZE), bool)
            for part in obj['parts'][0]:
                name, mask = part['part_name'][0], part['mask'].astype(bool)
                assert not np.any(union & mask)
                union |= mask
                parts[mask] = part_index[name]
            np.testing.assert_array_equal(union, obj['mask'].astype(bool))
        np.testing.assert_array_equal(parts, rendering.part)
        assert rendering.part.max() < len(PART_CLASSES)
    assert figures > 0


def test_classes_json_and_config_match_the_generator(synth):
    root, _ = synth
    with open(osp.join(root, 'classes.json')) as f:
        classes = json.load(f)
    assert classes == dict(objects=list(OBJECT_CLASSES), semantic=list(SEMANTIC_CLASSES),
                           parts=list(PART_CLASSES))
    cfg = Config.fromfile(osp.join(REPO, 'configs/_base_/datasets/synth_classes.py'))
    assert tuple(cfg.synth_object_classes) == OBJECT_CLASSES
    assert tuple(cfg.synth_semantic_classes) == SEMANTIC_CLASSES
    assert tuple(cfg.synth_part_classes) == PART_CLASSES
    assert tuple(cfg.synth_voc_classes) == OBJECT_CLASSES + ('figure', ) == INSTANCE_CLASSES
    assert len(OBJECT_CLASSES) >= 10 and SEMANTIC_CLASSES[:2] == ('background', 'ground')


def test_output_is_atomic_and_arguments_are_checked(synth, tmp_path, monkeypatch):
    root, _ = synth
    with pytest.raises(FileExistsError, match='exists and is not empty'):
        generate_synth_scenes(root, 1, 1, size=SIZE, workers=1, progress=False)
    with pytest.raises(ValueError, match='num_train'):
        generate_synth_scenes(str(tmp_path / 'x'), num_train=-1, progress=False)
    with pytest.raises(ValueError, match='size'):
        generate_synth_scenes(str(tmp_path / 'x'), size=8, progress=False)

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(generate_module, 'write_indexes', interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate_synth_scenes(str(tmp_path / 'half'), 2, 1, size=32, workers=1, progress=False)
    assert os.listdir(tmp_path) == []   # neither 'half' nor its temporary folder


def test_command_line(tmp_path):
    out = tmp_path / 'cli'
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    subprocess.run([sys.executable, osp.join(REPO, 'tools/make_synth_data.py'), '--out',
                    str(out), '--num-train', '2', '--num-val', '1', '--size', '32', '--seed',
                    '5', '--workers', '1'], check=True, env=env, capture_output=True)
    with open(out / 'nyud/gt_sets/val.txt') as f:
        assert f.read() == '000003\n'
    assert read(str(out / 'coco/train2017/000001.jpg')).shape == (32, 32, 3)
