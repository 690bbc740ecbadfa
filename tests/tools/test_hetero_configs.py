"""configs/hetero: the tiny ImageNet + COCO + ADE20K recipe trains (one process and two), the
full-size configs build with the expected parameter counts and run."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmengine.structures import InstanceData

from modzoo.analysis import count_params
from modzoo.engine.visualization import show_dense_results
from modzoo.registry import MODELS
from modzoo.structures import TaskDataSample

from tool_runner import REPO, run_tool

HETERO = osp.join(REPO, 'configs', 'hetero')
TINY = osp.join(HETERO, 'moe-vit-tiny_synth_cls-det-seg.py')
# (total, backbone, det head); backbone = the official Mod-Squad model's count for 3 tasks:
# 52,398,720 shared + 3 x (71,424 router + 384 task embedding) for S/16,
# 200,347,392 + 3 x (184,320 + 768) for B/16
FULL = {'moe-vit-s16_modsquad-twice_in1k-coco-ade20k.py': (76_773_331, 52_614_144, 22_749_269),
        'moe-vit-b16_modsquad-twice_in1k-coco-ade20k.py': (228_101_683, 200_902_656,
                                                           25_011_125)}
SMALL_BACKBONE = dict(arch=dict(embed_dim=32, depth=2, num_heads=2), out_indices=(0, 1),
                      moa_experts=4, mlp_experts=4, mlp_top_k=2, drop_path_rate=0.0)


def small_cfg(data_root, work_dir):
    """The tiny hetero config on ``data_root`` with a 2-block, 32-wide MoE ViT."""
    cfg = Config.fromfile(TINY)
    cfg.model.backbone.update(SMALL_BACKBONE)
    for head in cfg.model.heads.values():
        head.update(in_channels=32, **({'in_index': (0, 1)} if 'in_index' in head else {}))
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].update(num_workers=0, persistent_workers=False, batch_size=4)
        cfg[f'{split}_dataloader'].dataset.update(data_root=data_root, synth_if_missing=False)
    cfg.train_dataloader.batch_sampler.batch_sizes = dict(det=2)
    cfg.work_dir = str(work_dir)
    cfg.default_hooks.logger.interval = 1
    return cfg


class DetLossProbe(Hook):
    """The detection loss of one fixed batch, before and after training (same RNG state)."""

    def __init__(self, batch):
        self.batch, self.losses = batch, []

    def _probe(self, runner):
        torch.manual_seed(0)
        model = runner.model.train()
        with torch.no_grad():
            data = model.data_preprocessor(self.batch, True)
            self.losses.append(float(model(**data, mode='loss')['loss_det']))

    before_train = after_train = _probe


def test_tiny_config_trains_every_task_and_the_detection_loss_drops(tiny_synth, tmp_path):
    cfg = small_cfg(tiny_synth, tmp_path)
    cfg.train_cfg.update(max_iters=24, val_interval=100)
    cfg.param_scheduler = []
    cfg.custom_hooks[-1].interval = 2  # test batches 0, 2, 4: one of each source
    runner = Runner.from_cfg(cfg)
    dataset = runner.train_dataloader.dataset
    det = list(dataset.source_range(dataset.source_names.index('det')))[:2]
    probe = DetLossProbe(pseudo_collate([dataset[i] for i in det]))
    runner.register_hook(probe)
    runner.train()
    scalars = runner.message_hub.log_scalars
    for key in ('loss_cls', 'loss_det', 'loss_semseg', 'loss_moe_mi', 'det_rpn_cls', 'det_mask'):
        assert f'train/{key}' in scalars
    assert len(scalars['train/loss_det'].data[0]) >= 3  # detection batches were drawn
    before, after = probe.losses
    assert after < 0.7 * before
    metrics = runner.test()
    assert {'cls/top1', 'det/bbox_mAP', 'det/segm_mAP', 'semseg/mIoU'} <= set(metrics)
    # TaskVisualizationHook drew test batches; --show-dir draws the instances too
    drawn = glob.glob(str(tmp_path / '**' / 'vis_image' / 'test_*.png'), recursive=True)
    assert sorted(osp.basename(p).split('_')[1] for p in drawn) == ['cls', 'det', 'semseg']
    written = show_dense_results(runner.model, runner.test_dataloader.dataset,
                                 str(tmp_path / 'show'), 1)
    assert {osp.basename(p) for p in written} >= {'det_pred.png', 'det_gt.png',
                                                  'semseg_pred.png'}


def test_tiny_config_two_processes(tiny_synth, tmp_path):
    path = tmp_path / 'cfg.py'
    backbone = dict(SMALL_BACKBONE, arch=dict(_delete_=True, **SMALL_BACKBONE['arch']))
    path.write_text(f'''
_base_ = [{TINY!r}]
model = dict(backbone={backbone!r}, heads=dict(
    cls=dict(in_channels=32), det=dict(in_channels=32), semseg=dict(in_channels=32,
                                                                    in_index=(0, 1))))
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        batch_sampler=dict(batch_sizes=dict(det=1)),
                        dataset=dict(data_root={tiny_synth!r}, synth_if_missing=False))
param_scheduler = []
train_cfg = dict(max_iters=4, val_interval=100)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=4))
''')
    run_tool('tools/train.py', str(path), '--work-dir', str(tmp_path / 'work'), '--launcher',
             'pytorch', '--no-validate', nproc=2)
    assert (tmp_path / 'work' / 'iter_4.pth').is_file()


@pytest.mark.parametrize('name', list(FULL))
def test_full_size_configs_build_and_run(name):
    cfg = Config.fromfile(osp.join(HETERO, name))
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    counts = count_params(model), count_params(model.backbone), count_params(model.heads.det)
    print(name, counts)
    assert counts == FULL[name]
    model = model.to_empty(device='cpu')
    torch.manual_seed(0)
    with torch.no_grad():  # cheap random weights: this checks that the graph runs
        for param in model.parameters():
            param.normal_(0, 0.02)
    model.eval()
    size = (32, 64)
    sample = TaskDataSample(metainfo=dict(tasks=('det', ), img_shape=size, pad_shape=size,
                                          ori_shape=size))
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[4., 4., 40., 28.]]),
                                       labels=torch.tensor([3]),
                                       masks=torch.ones(1, *size, dtype=torch.uint8))
    cls = TaskDataSample(metainfo=dict(tasks=('cls', ), img_shape=(32, 32)))
    with torch.no_grad():
        det = model(torch.randn(1, 3, *size), [sample], mode='predict')[0]
        assert det.pred_instances.masks.shape[1:] == size
        assert model(torch.randn(1, 3, 32, 32), [cls], mode='predict')[0].pred_score.shape == \
            (1000, )
    model.train()
    losses = model(torch.randn(1, 3, *size), [sample], mode='loss')
    assert torch.isfinite(losses['loss_det'])
