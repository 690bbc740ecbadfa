"""Write one rendered scene in the layouts of the real datasets, and their index files.

Each ``write_<format>`` writes the per-image files of one dataset under ``root``;
:func:`write_scene` calls them all and returns the record that :func:`write_indexes` turns
into the COCO json files and split lists once every scene is written. All outputs are
byte-deterministic (no timestamps).
"""
import io
import json
import os
import os.path as osp
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import scipy.io
from pycocotools import mask as mask_utils

from .captions import describe
from .render import PART_NAMES
from .scene import FIGURE, INSTANCE_CLASSES, OBJECT_CLASSES, PART_CLASSES, SEMANTIC_CLASSES

COCO_SPLITS = {'train': 'train2017', 'val': 'val2017'}
ADE_SPLITS = {'train': 'training', 'val': 'validation'}
VOC_ROOT = 'voc/VOCdevkit/VOC2007'
PERSON_CLASS_IND = 15   # PASCAL VOC index of 'person', what PASCAL-Part loaders look for
_MAT_HEADER = b'MATLAB 5.0 MAT-file, written by modzoo SynthScenes'.ljust(116)
# Like a depth sensor, NYUD depth has a range: farther ground (toward the horizon) is 0, no
# depth. Without it a few horizon pixels at 100+ m would dominate the depth loss and RMSE.
NYUD_MAX_DEPTH = 20.0


def make_dirs(root):
    """Create every folder the writers write into."""
    dirs = [f'imagenet/{split}/{cls}' for split in COCO_SPLITS for cls in INSTANCE_CLASSES]
    dirs += [f'coco/{d}' for d in COCO_SPLITS.values()] + ['coco/annotations']
    dirs += [f'ade20k/{kind}/{d}' for kind in ('images', 'annotations')
             for d in ADE_SPLITS.values()]
    dirs += [f'nyud/{d}' for d in ('images', 'segmentation', 'depth', 'normals', 'edge',
                                   'gt_sets')]
    dirs += [f'pascal_context/{d}' for d in (
        'JPEGImages', 'ImageSets/Context', 'semseg/pascal-context', 'pascal-context/trainval',
        'human_parts', 'sal_distill', 'normals_distill')]
    dirs += [f'{VOC_ROOT}/{d}' for d in ('JPEGImages', 'Annotations', 'ImageSets/Main')]
    for d in dirs:
        os.makedirs(osp.join(root, d), exist_ok=True)


def _write(path, data):
    with open(path, 'wb') as f:
        f.write(data)


def _encode(ext, array, *params):
    """Image bytes of ``array`` ([H, W] or RGB [H, W, 3]) in format ``ext`` ('.png', '.jpg')."""
    if array.ndim == 3:
        array = np.ascontiguousarray(array[..., ::-1])   # OpenCV writes BGR
    ok, data = cv2.imencode(ext, array, list(params))
    assert ok, f'OpenCV could not encode a {array.shape} {array.dtype} array as {ext}'
    return data.tobytes()


def _write_mat(path, variables):
    """A compressed MAT-file whose header carries no timestamp."""
    buf = io.BytesIO()
    scipy.io.savemat(buf, variables, do_compression=True)
    _write(path, _MAT_HEADER + buf.getvalue()[len(_MAT_HEADER):])


def _normal_png(normal):
    """uint8 RGB [H, W, 3] = (n + 1) / 2 * 255; 0 where there is no normal (sky)."""
    rgb = np.round((normal + 1) / 2 * 255).astype(np.uint8)
    return rgb * np.any(normal != 0, axis=-1, keepdims=True)


def dominant_class(scene, rendering):
    """Name of the class whose objects cover the most pixels (ties: the lower class index)."""
    pixels = np.bincount(rendering.instance.ravel(), minlength=len(scene.objects) + 1)[1:]
    per_class = np.zeros(len(INSTANCE_CLASSES), np.int64)
    for obj, n in zip(scene.objects, pixels):
        per_class[INSTANCE_CLASSES.index(obj.cls)] += n
    return INSTANCE_CLASSES[int(np.argmax(per_class))]


def write_imagenet(root, split, sid, jpeg, cls):
    """The image in the folder of its class (``dominant_class``)."""
    _write(osp.join(root, 'imagenet', split, cls, f'{sid}.JPEG'), jpeg)


def write_ade20k(root, split, sid, jpeg, rendering):
    """Annotation png: 0 = unlabelled, v >= 1 = SEMANTIC_CLASSES[v - 1]."""
    _write(osp.join(root, 'ade20k/images', ADE_SPLITS[split], f'{sid}.jpg'), jpeg)
    _write(osp.join(root, 'ade20k/annotations', ADE_SPLITS[split], f'{sid}.png'),
           _encode('.png', rendering.semantic + 1))


def write_nyud(root, sid, rendering):
    """NYUD-v2 (ATRC copy): RGB png, label+1 png, depth npy (0 beyond ``NYUD_MAX_DEPTH``),
    normals png, edge png."""
    nyud = osp.join(root, 'nyud')
    _write(osp.join(nyud, 'images', f'{sid}.png'), _encode('.png', rendering.image))
    _write(osp.join(nyud, 'segmentation', f'{sid}.png'), _encode('.png', rendering.semantic + 1))
    with open(osp.join(nyud, 'depth', f'{sid}.npy'), 'wb') as f:
        np.save(f, np.where(rendering.depth <= NYUD_MAX_DEPTH, rendering.depth, 0)
                .astype(np.float32))
    _write(osp.join(nyud, 'normals', f'{sid}.png'), _encode('.png', _normal_png(rendering.normal)))
    _write(osp.join(nyud, 'edge', f'{sid}.png'), _encode('.png', rendering.edge * 255))


def _human_parts(scene, rendering, sid):
    """PASCAL-Part ``anno`` struct: one 'person' object per visible figure, with its parts."""
    obj_dtype = [('class', 'O'), ('class_ind', 'O'), ('mask', 'O'), ('parts', 'O')]
    people = [k for k, obj in enumerate(scene.objects) if obj.cls == FIGURE]
    objects = np.zeros((1, len(people)), obj_dtype)
    for j, k in enumerate(people):
        on_figure = rendering.instance == k + 1
        masks = [(name, on_figure & (rendering.limb == v + 1)) for v, name in enumerate(PART_NAMES)]
        masks = [(name, mask.astype(np.uint8)) for name, mask in masks if mask.any()]
        parts = np.zeros((1, len(masks)), [('part_name', 'O'), ('mask', 'O')])
        for i, part in enumerate(masks):
            parts[0, i] = part
        objects[0, j] = ('person', PERSON_CLASS_IND, on_figure.astype(np.uint8), parts)
    return {'imname': sid, 'objects': objects}


def write_pascal_context(root, sid, jpeg, scene, rendering):
    """PASCAL-Context (ATRC copy): image, semseg png, LabelMap mat, parts mat, saliency and
    normals pngs."""
    pc = osp.join(root, 'pascal_context')
    _write(osp.join(pc, 'JPEGImages', f'{sid}.jpg'), jpeg)
    _write(osp.join(pc, 'semseg/pascal-context', f'{sid}.png'), _encode('.png', rendering.semantic))
    _write_mat(osp.join(pc, 'pascal-context/trainval', f'{sid}.mat'),
               {'LabelMap': rendering.semantic.astype(np.uint16)})
    _write_mat(osp.join(pc, 'human_parts', f'{sid}.mat'),
               {'anno': _human_parts(scene, rendering, sid)})
    _write(osp.join(pc, 'sal_distill', f'{sid}.png'), _encode('.png', rendering.saliency * 255))
    _write(osp.join(pc, 'normals_distill', f'{sid}.png'),
           _encode('.png', _normal_png(rendering.normal)))


def _visible_objects(scene, rendering):
    """Per object: (class name, visible mask [S, S] bool, cut by the image border)."""
    for k, obj in enumerate(scene.objects):
        silhouette = rendering.silhouettes[k]
        cut = silhouette[0].any() or silhouette[-1].any() or silhouette[:, 0].any() \
            or silhouette[:, -1].any()
        yield obj.cls, rendering.instance == k + 1, bool(cut)


def write_voc(root, sid, jpeg, scene, rendering):
    """VOC2007 image and xml (boxes of the visible pixels, 1-based inclusive)."""
    voc = osp.join(root, VOC_ROOT)
    _write(osp.join(voc, 'JPEGImages', f'{sid}.jpg'), jpeg)
    ann = ET.Element('annotation')
    ET.SubElement(ann, 'folder').text = 'VOC2007'
    ET.SubElement(ann, 'filename').text = f'{sid}.jpg'
    ET.SubElement(ET.SubElement(ann, 'source'), 'database').text = 'SynthScenes'
    size = ET.SubElement(ann, 'size')
    for tag, value in (('width', scene.size), ('height', scene.size), ('depth', 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(ann, 'segmented').text = '0'
    for cls, mask, cut in _visible_objects(scene, rendering):
        ys, xs = np.nonzero(mask)
        obj = ET.SubElement(ann, 'object')
        for tag, value in (('name', cls), ('pose', 'Unspecified'), ('truncated', int(cut)),
                           ('difficult', 0)):
            ET.SubElement(obj, tag).text = str(value)
        box = ET.SubElement(obj, 'bndbox')
        for tag, value in (('xmin', xs.min()), ('ymin', ys.min()), ('xmax', xs.max()),
                           ('ymax', ys.max())):
            ET.SubElement(box, tag).text = str(int(value) + 1)
    ET.indent(ann)
    _write(osp.join(voc, 'Annotations', f'{sid}.xml'), ET.tostring(ann, encoding='utf-8'))


def coco_objects(scene, rendering):
    """COCO annotations (without ids) of the visible objects: RLE masks, box, area."""
    anns = []
    for cls, mask, _ in _visible_objects(scene, rendering):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        anns.append(dict(category_id=INSTANCE_CLASSES.index(cls) + 1,
                         bbox=[float(v) for v in mask_utils.toBbox(rle)],
                         area=float(mask_utils.area(rle)), iscrowd=0,
                         segmentation=dict(size=[int(s) for s in rle['size']],
                                           counts=rle['counts'].decode('ascii'))))
    return anns


def write_scene(root, split, sid, scene, rendering):
    """Write every format's files of one scene; returns its record for :func:`write_indexes`."""
    jpeg = _encode('.jpg', rendering.image, cv2.IMWRITE_JPEG_QUALITY, 95)
    label = dominant_class(scene, rendering)
    write_imagenet(root, split, sid, jpeg, label)
    _write(osp.join(root, 'coco', COCO_SPLITS[split], f'{sid}.jpg'), jpeg)
    write_ade20k(root, split, sid, jpeg, rendering)
    write_nyud(root, sid, rendering)
    write_pascal_context(root, sid, jpeg, scene, rendering)
    write_voc(root, sid, jpeg, scene, rendering)
    return dict(id=sid, split=split, size=scene.size, label=label,
                objects=coco_objects(scene, rendering), captions=describe(scene, rendering))


def _coco_json(records, key):
    """COCO ``instances`` (key 'objects') or ``captions`` (key 'captions') of some records."""
    images, anns = [], []
    for rec in records:
        images.append(dict(id=int(rec['id']), file_name=f"{rec['id']}.jpg",
                           height=rec['size'], width=rec['size']))
        for item in rec[key]:
            ann = dict(item) if key == 'objects' else dict(caption=item)
            anns.append(dict(id=len(anns) + 1, image_id=int(rec['id']), **ann))
    doc = dict(info=dict(description='SynthScenes', version='1.0'), licenses=[],
               images=images, annotations=anns)
    if key == 'objects':
        doc['categories'] = [dict(id=i + 1, name=cls,
                                  supercategory='person' if cls == FIGURE else 'shape')
                             for i, cls in enumerate(INSTANCE_CLASSES)]
    return doc


def write_indexes(root, records):
    """COCO json files, split lists and classes.json, from every scene's record."""
    for split, coco_split in COCO_SPLITS.items():
        subset = [r for r in records if r['split'] == split]
        for name, key in (('instances', 'objects'), ('captions', 'captions')):
            with open(osp.join(root, 'coco/annotations', f'{name}_{coco_split}.json'), 'w') as f:
                json.dump(_coco_json(subset, key), f)
        ids = ''.join(f"{r['id']}\n" for r in subset)
        for folder in ('nyud/gt_sets', 'pascal_context/ImageSets/Context',
                       f'{VOC_ROOT}/ImageSets/Main'):
            with open(osp.join(root, folder, f'{split}.txt'), 'w') as f:
                f.write(ids)
    with open(osp.join(root, 'classes.json'), 'w') as f:
        json.dump(dict(objects=OBJECT_CLASSES, semantic=SEMANTIC_CLASSES, parts=PART_CLASSES),
                  f, indent=2)
