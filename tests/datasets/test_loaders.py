"""The real-format loaders on freshly generated SynthScenes data (every format is written
from one scene pool, so the formats must agree with each other), plus hand-built cases
for the decoding rules and the errors a user can cause."""
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
import scipy.io
from PIL import Image

from modzoo.datasets.ade20k import ADE20KDataset
from modzoo.datasets.coco import CocoDataset, segmentation_to_mask
from modzoo.datasets.imagenet import ImageNetDataset
from modzoo.datasets.nyud import NYUDDataset
from modzoo.datasets.pascal_context import (NYU_NORMAL_CONTEXT_CLASSES, PascalContextDataset,
                                            edges_from_label_map, read_human_parts, thin)
from modzoo.datasets.synth import INSTANCE_CLASSES, SEMANTIC_CLASSES, generate_synth_scenes
from modzoo.datasets.synth.writers import NYUD_MAX_DEPTH
from modzoo.datasets.voc import VOCDataset
from modzoo.registry import DATASETS

NUM_TRAIN, NUM_VAL = 12, 6
LOAD = [dict(type='LoadImage'), dict(type='LoadTaskAnnotations')]
FIGURE = SEMANTIC_CLASSES.index('figure')


@pytest.fixture(scope='session')
def synth(tmp_path_factory):
    """SynthScenes rendered once per test session: 12 train + 6 val scenes of 40 px."""
    root = str(tmp_path_factory.mktemp('synth') / 'data')
    return generate_synth_scenes(root, num_train=NUM_TRAIN, num_val=NUM_VAL, size=40, seed=0,
                                 workers=1, progress=False)


def _copy(synth, folder, tmp_path):
    """A private copy of one format of the synth data, to break."""
    return shutil.copytree(osp.join(synth, folder), tmp_path / folder)


def _samples(dataset):
    return [dataset[i] for i in range(len(dataset))]


def _write_png(path, array):
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


# ---------------------------------------------------------------- the formats agree


def test_semantic_maps_agree_across_formats(synth):
    ade = ADE20KDataset(f'{synth}/ade20k', 'val', pipeline=LOAD,
                        metainfo=dict(classes=SEMANTIC_CLASSES))
    nyud = NYUDDataset(f'{synth}/nyud', 'val', labels=('sem_seg', ), pipeline=LOAD)
    pascal = PascalContextDataset(f'{synth}/pascal_context', 'val', labels=('sem_seg', ),
                                  pipeline=LOAD)
    assert len(ade) == len(nyud) == len(pascal) == NUM_VAL
    assert ade.metainfo['classes'] == SEMANTIC_CLASSES
    for a, n, p in zip(_samples(ade), _samples(nyud), _samples(pascal)):
        assert osp.basename(a['img_path'])[:6] == osp.basename(n['img_path'])[:6]
        assert a['gt_sem_seg'].dtype == np.uint8 and a['gt_sem_seg'].shape == (40, 40)
        assert a['gt_sem_seg'].max() < len(SEMANTIC_CLASSES)
        np.testing.assert_array_equal(a['gt_sem_seg'], n['gt_sem_seg'])
        np.testing.assert_array_equal(a['gt_sem_seg'], p['gt_sem_seg'])


def test_coco_instances_match_the_semantic_map(synth):
    coco = CocoDataset(f'{synth}/coco', 'train', pipeline=LOAD,
                       caption_file='annotations/captions_train2017.json')
    ade = ADE20KDataset(f'{synth}/ade20k', 'train', pipeline=LOAD,
                        metainfo=dict(classes=SEMANTIC_CLASSES))
    assert coco.metainfo['classes'] == INSTANCE_CLASSES  # from the json categories
    assert len(coco) == NUM_TRAIN
    for sample, semantic in zip(_samples(coco), _samples(ade)):
        boxes, labels, masks = sample['gt_bboxes'], sample['gt_bboxes_labels'], sample['gt_masks']
        assert boxes.dtype == np.float32 and labels.dtype == np.int64
        assert masks.dtype == np.uint8 and masks.shape == (len(boxes), 40, 40) and len(boxes)
        for box, label, mask in zip(boxes, labels, masks):
            ys, xs = np.nonzero(mask)
            # xyxy boxes frame the decoded RLE mask
            np.testing.assert_allclose(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            name = INSTANCE_CLASSES[label]
            assert (semantic['gt_sem_seg'][mask == 1] == SEMANTIC_CLASSES.index(name)).all()
        assert len(sample['gt_text']) >= 2 and all(isinstance(t, str) for t in sample['gt_text'])


def test_voc_labels_are_the_coco_categories(synth):
    voc = VOCDataset(f'{synth}/voc/VOCdevkit/VOC2007', 'train',
                     metainfo=dict(classes=INSTANCE_CLASSES))
    coco = CocoDataset(f'{synth}/coco', 'train', pipeline=LOAD, with_mask=False)
    assert len(voc) == NUM_TRAIN
    for i in range(NUM_TRAIN):
        gt_labels = voc[i]['gt_labels']
        assert gt_labels.dtype == np.float32 and gt_labels.shape == (len(INSTANCE_CLASSES), )
        assert set(np.flatnonzero(gt_labels)) == set(coco[i]['gt_bboxes_labels'])
        assert 'gt_masks' not in coco[i]


def test_imagenet_labels_are_the_class_folders(synth):
    train = ImageNetDataset(f'{synth}/imagenet', 'train')
    val = ImageNetDataset(f'{synth}/imagenet', 'val')
    assert len(train) == NUM_TRAIN and len(val) == NUM_VAL
    # classes default to the train folders, so val agrees even with empty class folders
    assert train.metainfo['classes'] == val.metainfo['classes'] == tuple(sorted(
        INSTANCE_CLASSES))
    ordered = ImageNetDataset(f'{synth}/imagenet', 'val', metainfo=dict(classes=INSTANCE_CLASSES))
    for i in range(NUM_VAL):
        folder = osp.basename(osp.dirname(val[i]['img_path']))
        assert val[i]['gt_label'] == sorted(INSTANCE_CLASSES).index(folder)
        assert ordered[i]['gt_label'] == INSTANCE_CLASSES.index(folder)


def test_nyud_labels(synth):
    nyud = NYUDDataset(f'{synth}/nyud', 'train', pipeline=LOAD)
    assert len(nyud) == NUM_TRAIN and len(nyud.metainfo['classes']) == 40
    for sample in _samples(nyud):
        assert sample['img'].shape == (40, 40, 3)
        depth, normal, edge = sample['gt_depth'], sample['gt_normal'], sample['gt_edge']
        assert depth.dtype == np.float32 and (depth >= 0).all() and (depth > 0).any()
        norm = np.linalg.norm(normal, axis=2)
        assert normal.shape == (40, 40, 3) and np.allclose(norm[norm > 0], 1, atol=1e-5)
        # pixels without a normal (the sky) have no depth either; far ground beyond the
        # depth range has a normal but no depth
        assert (depth[norm == 0] == 0).all() and depth.max() <= NYUD_MAX_DEPTH
        assert set(np.unique(edge)) <= {0, 1} and edge.any()


def test_pascal_context_labels(synth):
    pascal = PascalContextDataset(f'{synth}/pascal_context', 'train', pipeline=LOAD,
                                  normal_classes=None)
    assert pascal.metainfo['part_classes'][0] == 'background'
    with_person = 0
    for sample in _samples(pascal):
        sem, parts = sample['gt_sem_seg'], sample['gt_parts']
        if (sem == FIGURE).any():
            with_person += 1
            # every figure pixel carries a part, nothing else does
            np.testing.assert_array_equal((parts > 0) & (parts < 7), sem == FIGURE)
        else:
            assert (parts == 255).all()
        raw_saliency = np.array(Image.open(sample['ann_paths']['gt_saliency']))
        np.testing.assert_array_equal(sample['gt_saliency'], raw_saliency > 127)
        label_map = scipy.io.loadmat(sample['label_map_path'])['LabelMap']
        np.testing.assert_array_equal(sample['gt_edge'], edges_from_label_map(label_map))
        boundary = np.abs(cv2.Laplacian(label_map.astype(float), cv2.CV_64F)) > 0
        assert sample['gt_edge'].any() and not (sample['gt_edge'] & ~boundary).any()
    assert with_person > 0
    people = PascalContextDataset(f'{synth}/pascal_context', 'train', labels=('parts', ),
                                  person_only=True, pipeline=LOAD)
    assert len(people) == with_person
    assert all((s['gt_parts'] != 255).all() for s in _samples(people))


def _person_anno(path, mask_area):
    """Overwrite a PASCAL-Part ``anno`` file with one person object without part annotations
    whose mask covers ``mask_area`` pixels."""
    shape = scipy.io.loadmat(path.replace('human_parts', 'pascal-context/trainval'))[
        'LabelMap'].shape
    mask = np.zeros(shape, np.uint8)
    mask.flat[:mask_area] = 1
    objects = np.zeros((1, 1), [('class', 'O'), ('class_ind', 'O'), ('mask', 'O'),
                                ('parts', 'O')])
    objects[0, 0] = ('person', 15, mask, np.zeros((1, 0), [('part_name', 'O'), ('mask', 'O')]))
    scipy.io.savemat(path, {'anno': {'imname': 'x', 'objects': objects}})


def test_pascal_person_only_keeps_part_less_persons_as_invpt(synth, tmp_path):
    root = shutil.copytree(f'{synth}/pascal_context', tmp_path / 'pascal_context')
    every = PascalContextDataset(str(root), 'train', labels=('parts', ), pipeline=LOAD)
    samples = list(_samples(every))
    no_person = [s['ann_paths']['gt_parts'] for s in samples if (s['gt_parts'] == 255).all()]
    with_parts = len(samples) - len(no_person)
    assert len(no_person) >= 2 and with_parts > 0
    _person_anno(no_person[0], mask_area=10)  # a person without part annotations: kept
    _person_anno(no_person[1], mask_area=0)   # a person of zero area: left out
    people = PascalContextDataset(str(root), 'train', labels=('parts', ), person_only=True,
                                  pipeline=LOAD)
    kept = {s['ann_paths']['gt_parts']: s['gt_parts'] for s in _samples(people)}
    assert len(kept) == with_parts + 1
    assert (kept[no_person[0]] == 255).all()  # its parts label is all ignore
    assert no_person[1] not in kept


def test_pascal_normals_kept_only_on_normal_classes(synth):
    ground = SEMANTIC_CLASSES.index('ground')
    every = PascalContextDataset(f'{synth}/pascal_context', 'val', labels=('normal', ),
                                 normal_classes=None, pipeline=LOAD)
    only_ground = PascalContextDataset(f'{synth}/pascal_context', 'val', labels=('normal', ),
                                       normal_classes=(ground, ), pipeline=LOAD)
    for all_normals, ground_normals in zip(_samples(every), _samples(only_ground)):
        label_map = scipy.io.loadmat(all_normals['label_map_path'])['LabelMap']
        on_ground = label_map == ground
        np.testing.assert_array_equal(ground_normals['gt_normal'][on_ground],
                                      all_normals['gt_normal'][on_ground])
        assert not ground_normals['gt_normal'][~on_ground].any()
        assert np.linalg.norm(ground_normals['gt_normal'][on_ground], axis=-1).min() > 0.99
    assert len(NYU_NORMAL_CONTEXT_CLASSES) == 170 and 427 in NYU_NORMAL_CONTEXT_CLASSES


def test_registry_build_pipeline_and_subsets(synth):
    dataset = DATASETS.build(dict(
        type='NYUDDataset', data_root=f'{synth}/nyud', split='val', labels=('depth', 'edge'),
        pipeline=[*LOAD, dict(type='RandomFlip', prob=1.0), dict(type='PackTaskInputs')]))
    packed = dataset[0]
    assert packed['inputs'].shape == (3, 40, 40)
    assert set(packed['data_samples'].keys()) == {'gt_depth', 'gt_edge'}
    assert len(NYUDDataset(f'{synth}/nyud', 'val', indices=2)) == 2
    lazy = NYUDDataset(f'{synth}/nyud', 'val', lazy_init=True)
    assert not lazy._fully_initialized and len(lazy) == NUM_VAL
    with pytest.raises(ValueError, match=r"split 'test' is not one of \['train', 'val'\]"):
        NYUDDataset(f'{synth}/nyud', 'test')
    with pytest.raises(ValueError, match=r"unknown: \['parts'\]"):
        NYUDDataset(f'{synth}/nyud', labels=('depth', 'parts'))


# ---------------------------------------------------------------- decoding rules by hand


def test_nyud_decoding_by_hand(tmp_path):
    """label - 1 (0 -> 255), normals 2x/255 - 1 renormalised ((0, 0, 0) = none), edge / 255."""
    _write_png(f'{tmp_path}/images/a.png', np.zeros((2, 2, 3), np.uint8))
    _write_png(f'{tmp_path}/segmentation/a.png', np.array([[0, 1], [2, 41]], np.uint8))
    _write_png(f'{tmp_path}/edge/a.png', np.array([[0, 255], [255, 0]], np.uint8))
    normals = np.array([[[255, 128, 128], [0, 0, 0]], [[128, 128, 255], [128, 0, 128]]],
                       np.uint8)
    _write_png(f'{tmp_path}/normals/a.png', normals)
    os.makedirs(f'{tmp_path}/depth')
    np.save(f'{tmp_path}/depth/a.npy', np.array([[0, 1.5], [2, 3]], np.float32))
    os.makedirs(f'{tmp_path}/gt_sets')
    (tmp_path / 'gt_sets' / 'train.txt').write_text('a\n')
    sample = NYUDDataset(str(tmp_path), 'train', pipeline=LOAD)[0]
    np.testing.assert_array_equal(sample['gt_sem_seg'], [[255, 0], [1, 40]])
    np.testing.assert_array_equal(sample['gt_edge'], [[0, 1], [1, 0]])
    np.testing.assert_array_equal(sample['gt_depth'], [[0, 1.5], [2, 3]])
    # 2 * 255 / 255 - 1 = 1, 2 * 128 / 255 - 1 = 1/255, 2 * 0 / 255 - 1 = -1; then unit length
    e = 1 / 255
    expected = np.array([[[1, e, e], [0, 0, 0]], [[e, e, 1], [e, -1, e]]])
    norm = np.linalg.norm(expected, axis=-1, keepdims=True)
    np.testing.assert_allclose(sample['gt_normal'], expected / np.maximum(norm, 1e-9),
                               atol=1e-6)


def test_ade20k_reduce_zero_label_by_hand(tmp_path):
    _write_png(f'{tmp_path}/images/training/a.jpg', np.zeros((1, 3, 3), np.uint8))
    _write_png(f'{tmp_path}/annotations/training/a.png', np.array([[0, 1, 255]], np.uint8))
    reduced = ADE20KDataset(str(tmp_path), 'train', pipeline=LOAD)[0]
    np.testing.assert_array_equal(reduced['gt_sem_seg'], [[255, 0, 255]])
    raw = ADE20KDataset(str(tmp_path), 'train', reduce_zero_label=False, pipeline=LOAD)[0]
    np.testing.assert_array_equal(raw['gt_sem_seg'], [[0, 1, 255]])


def _anno(objects):
    """A PASCAL-Part ``anno`` struct: objects = [(class_ind, mask, [(part name, mask)])]."""
    fields = [('class', 'O'), ('class_ind', 'O'), ('mask', 'O'), ('parts', 'O')]
    array = np.zeros((1, len(objects)), fields)
    for j, (class_ind, mask, parts) in enumerate(objects):
        part_array = np.zeros((1, len(parts)), [('part_name', 'O'), ('mask', 'O')])
        for i, part in enumerate(parts):
            part_array[0, i] = part
        array[0, j] = ('person' if class_ind == 15 else 'dog', class_ind, mask, part_array)
    return {'anno': {'imname': 'a', 'objects': array}}


def test_human_parts_mapping_by_hand(tmp_path):
    def box(y, x):
        mask = np.zeros((4, 4), np.uint8)
        mask[y, x] = 1
        return mask

    person = np.ones((4, 4), np.uint8)
    scipy.io.savemat(tmp_path / 'person.mat', _anno([
        (15, person, [('hair', box(0, 0)), ('ruarm', box(1, 1)), ('lfoot', box(2, 2)),
                      ('neck', box(3, 3))]),
        (12, person, [('head', box(0, 3))]),   # a dog's head is not a human part
    ]))
    np.testing.assert_array_equal(read_human_parts(str(tmp_path / 'person.mat'), (4, 4)),
                                  [[1, 0, 0, 0], [0, 3, 0, 0], [0, 0, 6, 0], [0, 0, 0, 2]])
    scipy.io.savemat(tmp_path / 'dog.mat', _anno([(12, person, [('head', box(0, 0))])]))
    assert (read_human_parts(str(tmp_path / 'dog.mat'), (3, 5)) == 255).all()
    scipy.io.savemat(tmp_path / 'odd.mat', _anno([(15, person, [('tail', box(0, 0))])]))
    with pytest.raises(ValueError, match=r"odd.mat': person part 'tail' is not one of"):
        read_human_parts(str(tmp_path / 'odd.mat'), (4, 4))


def test_thinning_matches_skimage():
    # the example of skimage.morphology.thin's documentation
    square = np.zeros((7, 7), bool)
    square[1:-1, 2:-2] = 1
    square[0, 1] = 1
    expected = np.zeros((7, 7), bool)
    expected[[0, 1, 2, 3, 4], [1, 2, 3, 3, 3]] = 1
    np.testing.assert_array_equal(thin(square), expected)
    # a 3-pixel thick bar thins to its middle line
    bar = np.zeros((7, 12), bool)
    bar[2:5, 1:11] = 1
    assert thin(bar).sum(axis=0).max() == 1 and thin(bar)[3, 2:10].all()
    skimage = pytest.importorskip('skimage.morphology')
    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = rng.random((30, 30)) < 0.5
        np.testing.assert_array_equal(thin(mask), skimage.thin(mask))


def test_coco_segmentation_formats_and_class_selection(synth):
    polygon = [[1, 1, 4, 1, 4, 3, 1, 3]]  # x, y corners of a 3 x 2 rectangle
    expected = np.zeros((5, 6), np.uint8)
    expected[1:3, 1:4] = 1
    np.testing.assert_array_equal(segmentation_to_mask(polygon, 5, 6), expected)
    # uncompressed RLE: alternating runs of 0s and 1s in column-major order
    uncompressed = dict(counts=[6, 2, 3, 2, 17], size=[5, 6])
    expected[:, 3] = 0
    np.testing.assert_array_equal(segmentation_to_mask(uncompressed, 5, 6), expected)
    chosen = ('figure', 'red_sphere')
    coco = CocoDataset(f'{synth}/coco', 'train', pipeline=LOAD, metainfo=dict(classes=chosen))
    full = CocoDataset(f'{synth}/coco', 'train', pipeline=LOAD)
    for selected, every in zip(_samples(coco), _samples(full)):
        names = [INSTANCE_CLASSES[label] for label in every['gt_bboxes_labels']]
        assert [chosen[label] for label in selected['gt_bboxes_labels']] == [
            n for n in names if n in chosen]
    with pytest.raises(ValueError, match=r"classes \['dragon'\] are not categories of"):
        CocoDataset(f'{synth}/coco', 'train', metainfo=dict(classes=('figure', 'dragon')))


# ---------------------------------------------------------------- errors a user can cause


def test_corrupt_image_names_the_file(synth, tmp_path):
    root = _copy(synth, 'nyud', tmp_path)
    dataset = NYUDDataset(str(root), 'train', pipeline=LOAD)
    path = dataset.get_data_info(0)['img_path']
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n truncated')
    with pytest.raises(OSError, match=f"cannot decode image file '{path}'"):
        dataset[0]


def test_missing_annotation_and_split_files_are_named(synth, tmp_path):
    root = _copy(synth, 'nyud', tmp_path)
    first = (root / 'gt_sets' / 'train.txt').read_text().split()[0]
    os.remove(root / 'depth' / f'{first}.npy')
    with pytest.raises(FileNotFoundError, match=f"NYUDDataset depth: '.*depth/{first}.npy' "
                                                'not found'):
        NYUDDataset(str(root), 'train')
    NYUDDataset(str(root), 'train', labels=('sem_seg', ))  # depth not asked for: fine
    os.remove(root / 'gt_sets' / 'val.txt')
    with pytest.raises(FileNotFoundError, match=r"split file '.*gt_sets/val.txt' not found "
                                                r'\(expected a text file with one image id'):
        NYUDDataset(str(root), 'val')
    coco = _copy(synth, 'coco', tmp_path)
    os.remove(coco / 'annotations' / 'captions_val2017.json')
    with pytest.raises(FileNotFoundError, match="captions file '.*captions_val2017.json' not "
                                                'found'):
        CocoDataset(str(coco), 'val', caption_file='annotations/captions_val2017.json')
    with pytest.raises(FileNotFoundError, match='instances file'):
        CocoDataset(str(coco), 'val', ann_file='annotations/nothing.json')
    with pytest.raises(FileNotFoundError, match="ImageNetDataset: split folder '.*nowhere/val'"):
        ImageNetDataset(str(tmp_path / 'nowhere'), 'val')


def test_label_png_of_the_wrong_size_names_file_and_sizes(synth, tmp_path):
    root = _copy(synth, 'pascal_context', tmp_path)
    dataset = PascalContextDataset(str(root), 'val', labels=('sem_seg', 'saliency'),
                                   pipeline=LOAD)
    path = dataset.get_data_info(0)['ann_paths']['gt_saliency']
    _write_png(path, np.zeros((20, 24), np.uint8))
    with pytest.raises(ValueError, match=rf"gt_saliency read from '{path}' has size \(20, 24\) "
                                         r"\(H, W\) but its image '.*' has size \(40, 40\)"):
        dataset[0]


def test_unknown_xml_class_is_named(synth, tmp_path):
    root = _copy(synth, 'voc', tmp_path) / 'VOCdevkit' / 'VOC2007'
    first = (root / 'ImageSets' / 'Main' / 'val.txt').read_text().split()[0]
    xml = root / 'Annotations' / f'{first}.xml'
    name = xml.read_text().split('<name>')[1].split('</name>')[0]
    xml.write_text(xml.read_text().replace(f'<name>{name}</name>', '<name>dragon</name>', 1))
    with pytest.raises(ValueError, match=f"{first}.xml': object class 'dragon' is not one of"):
        VOCDataset(str(root), 'val', metainfo=dict(classes=INSTANCE_CLASSES))
    # with the default 20 VOC classes the synth names are unknown too
    with pytest.raises(ValueError, match='is not one of the classes'):
        VOCDataset(str(root), 'train')


def test_voc_difficult_objects(tmp_path):
    for folder in ('JPEGImages', 'Annotations', 'ImageSets/Main'):
        os.makedirs(tmp_path / folder)
    _write_png(str(tmp_path / 'JPEGImages' / 'a.jpg'), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / 'ImageSets/Main/train.txt').write_text('a\n')
    objects = ''.join(f'<object><name>{n}</name><difficult>{d}</difficult></object>'
                      for n, d in (('cat', 0), ('dog', 1), ('cat', 1)))
    (tmp_path / 'Annotations' / 'a.xml').write_text(f'<annotation>{objects}</annotation>')
    easy = VOCDataset(str(tmp_path), 'train')[0]['gt_labels']
    every = VOCDataset(str(tmp_path), 'train', with_difficult=True)[0]['gt_labels']
    cat, dog = VOCDataset.METAINFO['classes'].index('cat'), VOCDataset.METAINFO[
        'classes'].index('dog')
    assert np.flatnonzero(easy).tolist() == [cat]
    assert np.flatnonzero(every).tolist() == sorted([cat, dog])


def test_imagenet_unknown_folder(synth, tmp_path):
    root = _copy(synth, 'imagenet', tmp_path)
    with pytest.raises(ValueError, match="class folder '.*val/blue_box' is not one of the 2 "
                                         'classes'):
        ImageNetDataset(str(root), 'val', metainfo=dict(classes=('a', 'b')))
