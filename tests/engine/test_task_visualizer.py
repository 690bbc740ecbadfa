import glob
from types import SimpleNamespace

import mmcv
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from modzoo.engine import TaskVisualizer
from modzoo.engine.hooks import TaskVisualizationHook
from modzoo.engine.visualization import PALETTE
from modzoo.structures import TaskDataSample

H, W = 20, 30


def _instances(scores=None):
    masks = torch.zeros(1, H, W, dtype=torch.uint8)
    masks[0, 3:10, 2:12] = 1
    fields = dict(bboxes=torch.tensor([[2., 3., 12., 10.]]), labels=torch.tensor([1]),
                  masks=masks)
    if scores is not None:
        fields['scores'] = torch.tensor(scores)
    return InstanceData(**fields)


def _visualizer(name, **kwargs):
    return TaskVisualizer.get_instance(name, classes=('ball', 'cube'), **kwargs)


def test_instances_are_drawn_in_their_class_colour_and_low_scores_left_out():
    vis = _visualizer('vis_instances', score_thr=0.3, alpha=1.0)
    image = np.zeros((H, W, 3), np.uint8)
    drawn = vis.draw_instances(image, _instances())
    assert (drawn[6, 7] == PALETTE[2]).all()          # inside the mask: label 1 -> colour 2
    assert (drawn[15:, 20:] == 0).all()                # far from the box: untouched
    assert (vis.draw_instances(image, _instances([0.1])) == 0).all()
    # predictions in the original image's size are drawn on the image resized to it
    big = InstanceData(bboxes=torch.tensor([[4., 6., 24., 20.]]), labels=torch.tensor([0]),
                       scores=torch.tensor([0.9]),
                       masks=torch.ones(1, 2 * H, 2 * W, dtype=torch.uint8))
    assert vis.draw_instances(image, big).shape == (2 * H, 2 * W, 3)


def test_add_datasample_puts_gt_and_predictions_beside_the_image(tmp_path):
    vis = _visualizer('vis_panels')
    sample = TaskDataSample()
    sample.gt_instances = _instances()
    sample.pred_instances = _instances([0.9])
    sample.gt_sem_seg = torch.ones(H, W, dtype=torch.long)
    sample.pred_depth = torch.rand(H, W)
    out = str(tmp_path / 'drawn.png')
    drawing = vis.add_datasample('x', np.full((H, W, 3), 90, np.uint8), sample, out_file=out)
    assert drawing.shape == (H, 5 * W, 3)  # image, gt + pred instances, gt sem_seg, pred depth
    assert mmcv.imread(out).shape == (H, 5 * W, 3)


def test_hook_writes_to_the_vis_backend(tmp_path):
    vis = _visualizer('vis_hook', vis_backends=[dict(type='LocalVisBackend')],
                      save_dir=str(tmp_path))
    sample = TaskDataSample(metainfo=dict(img_shape=(H, W), img_path='a/b/img7.png',
                                          source='coco'))
    sample.pred_instances = _instances([0.9])
    runner = SimpleNamespace(visualizer=vis, iter=12)
    hook = TaskVisualizationHook(interval=2)
    batch = dict(inputs=[torch.zeros(3, H + 2, W + 4, dtype=torch.uint8)])
    hook.after_val_iter(runner, 1, batch, [sample])  # not on the interval
    hook.after_val_iter(runner, 2, batch, [sample])
    files = glob.glob(str(tmp_path / '**' / '*.png'), recursive=True)
    assert [f.rsplit('/', 1)[1] for f in files] == ['val_coco_img7_12.png']
    assert mmcv.imread(files[0]).shape == (H, 2 * W, 3)
    with pytest.raises(ValueError, match='interval'):
        TaskVisualizationHook(interval=0)


def test_tensorboard_backend(tmp_path):
    pytest.importorskip('tensorboard')
    vis = _visualizer('vis_tb', vis_backends=[dict(type='TensorboardVisBackend')],
                      save_dir=str(tmp_path))
    sample = TaskDataSample()
    sample.pred_instances = _instances([0.9])
    vis.add_datasample('tb', np.zeros((H, W, 3), np.uint8), sample, step=1)
    assert glob.glob(str(tmp_path / '**' / 'events.out.tfevents.*'), recursive=True)
