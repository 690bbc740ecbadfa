"""tools/infer.py and modzoo.predictions: one readable file per image and task."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image
from pycocotools import mask as mask_util

from modzoo.heads.dense import EdgeHead, NormalHead
from modzoo.predictions import dense_at_original_size, save_prediction
from modzoo.structures import TaskDataSample
from modzoo.zoo import inference, init_model

from tool_runner import QUICKSTART, REPO, load_tool

infer = load_tool('infer.py')


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = init_model(QUICKSTART)
    path = str(tmp_path_factory.mktemp('ckpt') / 'model.pth')
    torch.save(dict(state_dict=model.state_dict()), path)
    return path


def _images(folder, count, size=(64, 64)):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = str(folder / f'img{i}.png')
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_infer_folder_writes_every_task(tmp_path, checkpoint):
    paths = _images(tmp_path / 'images', 3)
    (tmp_path / 'images' / 'broken.png').write_bytes(b'not an image')
    out = tmp_path / 'out'
    with pytest.warns(UserWarning, match='broken.png'):
        summary = infer.main([QUICKSTART, checkpoint, str(tmp_path / 'images'),
                              '--out-dir', str(out), '--batch-size', '2'])
    assert summary['images'] == 3 and summary['skipped'] == 1
    assert summary['files'] == 3 * 5  # cls, semseg, multilabel json/png; depth png + npy
    model = init_model(QUICKSTART, checkpoint)
    expected = inference(model, paths)
    for path, sample in zip(paths, expected):
        stem = osp.splitext(osp.basename(path))[0]
        cls = json.loads((out / 'cls' / f'{stem}.json').read_text())
        assert cls['label'] == int(sample.pred_label)
        assert cls['class'] == model.cfg.cls_data.metainfo.classes[cls['label']]
        assert cls['score'] == pytest.approx(float(sample.pred_score.max()), abs=1e-5)
        assert [c['score'] for c in cls['topk']] == sorted(
            (c['score'] for c in cls['topk']), reverse=True)
        seg = np.array(Image.open(out / 'semseg' / f'{stem}.png'))
        assert np.array_equal(seg, sample.pred_sem_seg.numpy())
        depth = np.load(out / 'depth' / f'{stem}.npy')
        np.testing.assert_allclose(depth, sample.pred_depth.numpy(), atol=1e-5)
        depth_png = np.array(Image.open(out / 'depth' / f'{stem}.png'))
        assert depth_png.dtype == np.uint16
        np.testing.assert_allclose(depth_png / 1000, depth, atol=5e-4)
        multi = json.loads((out / 'multilabel' / f'{stem}.json').read_text())
        np.testing.assert_allclose(multi['scores'], sample.pred_scores.numpy(), atol=1e-5)
        assert multi['labels'] == [i for i, s in enumerate(multi['scores']) if s >= 0.5]


def test_infer_one_task_and_a_glob(tmp_path, checkpoint):
    _images(tmp_path / 'a', 2)
    summary = infer.main([QUICKSTART, checkpoint, str(tmp_path / 'a' / '*.png'),
                          '--task', 'semseg', '--out-dir', str(tmp_path / 'out')])
    assert summary['images'] == 2 and summary['files'] == 2
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['semseg']


def test_infer_unknown_task_is_a_clear_error(tmp_path, checkpoint):
    _images(tmp_path / 'a', 1)
    with pytest.raises(SystemExit, match=r"no head for task\(s\) \['normals'\].*'cls'"):
        infer.main([QUICKSTART, checkpoint, str(tmp_path / 'a'), '--task', 'normals',
                    '--out-dir', str(tmp_path / 'out')])
    with pytest.raises(FileNotFoundError, match='nothing-here'):
        infer.main([QUICKSTART, checkpoint, str(tmp_path / 'nothing-here*.png'),
                    '--out-dir', str(tmp_path / 'out')])


def test_task_rounds_split_heads_writing_the_same_field():
    cfg = Config.fromfile(QUICKSTART)
    cfg.model.heads['cls2'] = dict(type='ClsHead', num_classes=3, in_channels=192)
    model = init_model(cfg)
    assert infer.task_rounds(model, list(model.heads)) == [
        ('cls', 'semseg', 'depth', 'multilabel'), ('cls2', )]


def _sample(pad=(6, 8), img=(4, 6), ori=(8, 12)):
    return TaskDataSample(metainfo=dict(pad_shape=pad, img_shape=img, ori_shape=ori))


def test_dense_predictions_are_cut_to_the_image_and_resized():
    seg = torch.arange(48).view(6, 8)
    out = dense_at_original_size(seg, _sample(), 'pred_sem_seg')
    assert out.shape == (8, 12) and out.dtype == seg.dtype
    assert torch.equal(out[::2, ::2], seg[:4, :6])  # nearest: every pixel doubled
    normal = torch.nn.functional.normalize(torch.randn(3, 6, 8), dim=0)
    out = dense_at_original_size(normal, _sample(), 'pred_normal')
    assert out.shape == (3, 8, 12)
    torch.testing.assert_close(out.norm(dim=0), torch.ones(8, 12))


def test_normal_and_edge_files_read_back(tmp_path):
    from modzoo.datasets.base import read_normal_png
    sample = _sample(pad=(4, 4), img=(4, 4), ori=(4, 4))
    sample.pred_normal = torch.nn.functional.normalize(torch.randn(3, 4, 4), dim=0)
    sample.pred_edge = torch.rand(4, 4)
    normal_head = NormalHead(in_channels=8)
    edge_head = EdgeHead(in_channels=8)
    [png] = save_prediction(sample, 'normals', normal_head, str(tmp_path), 'x')
    back = torch.from_numpy(read_normal_png(png)).permute(2, 0, 1)
    torch.testing.assert_close(back, sample.pred_normal, atol=1e-2, rtol=0)
    [png] = save_prediction(sample, 'edge', edge_head, str(tmp_path), 'x')
    grey = np.array(Image.open(png)) / 255
    np.testing.assert_allclose(grey, sample.pred_edge.numpy(), atol=1 / 255)


def _small_config(tmp_path, base, text):
    path = tmp_path / 'small.py'
    path.write_text(f"_base_ = [{osp.join(REPO, 'configs', base)!r}]\n{text}")
    return str(path)


def _checkpoint(tmp_path, config, prepare=None):
    torch.manual_seed(0)
    model = init_model(config)
    if prepare:
        prepare(model)
    path = str(tmp_path / 'model.pth')
    torch.save(dict(state_dict=model.state_dict()), path)
    return path


def test_infer_writes_coco_style_detections(tmp_path):
    """The hetero config: det (Mask R-CNN, its own pipeline: images as read) beside cls and
    semseg (resized to 64 px); one file per image and task, boxes and RLE masks readable."""
    config = _small_config(tmp_path, 'hetero/vit-tiny_synth_cls-det-seg.py', """
model = dict(backbone=dict(arch=dict(_delete_=True, embed_dim=32, depth=2, num_heads=2),
                           out_indices=(0, 1)),
             heads=dict(cls=dict(in_channels=32), semseg=dict(in_channels=32, in_index=(0, 1)),
                        det=dict(in_channels=32, channels=16, box_fc=32, mask_convs=1,
                                 roi_cfg=dict(score_thresh=0.0, detections_per_img=5))))
""")
    checkpoint = _checkpoint(tmp_path, config)
    paths = _images(tmp_path / 'images', 2, size=(80, 96))
    out = tmp_path / 'out'
    summary = infer.main([config, checkpoint, str(tmp_path / 'images'), '--out-dir', str(out)])
    assert summary['images'] == 2 and summary['files'] == 2 * 3
    model = init_model(config, checkpoint)
    assert infer.task_rounds(model, ['cls', 'det', 'semseg']) == [('cls', 'semseg'), ('det', )]
    with pytest.raises(ValueError, match=r"different test pipelines"):
        inference(model, paths, ('cls', 'det'))
    for path, sample in zip(paths, inference(model, paths, ('det', ))):
        stem = osp.splitext(osp.basename(path))[0]
        dets = json.loads((out / 'det' / f'{stem}.json').read_text())
        pred = sample.pred_instances
        assert (dets['height'], dets['width']) == (80, 96) and len(dets['instances']) == len(pred)
        assert len(pred) > 0
        for det, box, score, label, mask in zip(dets['instances'], pred.bboxes, pred.scores,
                                                pred.labels, pred.masks):
            x1, y1, x2, y2 = box.tolist()
            assert det['bbox'] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=0.01)
            assert det['score'] == pytest.approx(float(score), abs=1e-6)
            assert det['label'] == int(label)
            assert np.array_equal(mask_util.decode(det['segmentation']), mask.numpy())
        seg = np.array(Image.open(out / 'semseg' / f'{stem}.png'))
        assert seg.shape == (80, 96)  # back at the size of the image as read


def test_infer_multilane_lists_the_classes_seen_so_far(tmp_path):
    config = _small_config(tmp_path, 'multilane/multilane-tiny_synth-voc-b3c2.py', """
model = dict(pretrained=None,
             backbone=dict(vit_cfg=dict(img_size=32, patch_size=8, embed_dim=32, depth=2,
                                        num_heads=2), num_prompt_layers=1))
""")

    def second_task(model):
        model.next_task()  # pathways 0 and 1: the classes of the first two tasks
        for p in model.backbone.parameters():
            torch.nn.init.normal_(p, std=0.5)
    checkpoint = _checkpoint(tmp_path, config, second_task)
    paths = _images(tmp_path / 'images', 2, size=(32, 32))
    out = tmp_path / 'out'
    summary = infer.main([config, checkpoint, str(tmp_path / 'images'), '--out-dir', str(out),
                          '--score-thr', '0.3'])
    assert summary['images'] == 2 and summary['files'] == 2 and summary['tasks'] == ['multilabel']
    model = init_model(config, checkpoint)
    seen = set(c for task in model.cfg.class_mask[:2] for c in task)
    for path, sample in zip(paths, inference(model, paths)):
        result = json.loads((out / 'multilabel' / (osp.basename(path)[:-4] + '.json')).read_text())
        np.testing.assert_allclose(result['scores'], sample.pred_scores.numpy(), atol=1e-6)
        assert result['labels'] == [i for i, s in enumerate(result['scores'])
                                    if s >= 0.3 and i in seen]
        assert result['classes'] == [model.cfg.synth_voc_classes[i] for i in result['labels']]
