"""configs/multilane: the ViT-B/16 paper configs, the tiny SynthScenes configs, the plot tool."""
import glob
import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.structures import BaseDataElement

from modzoo.datasets.class_incremental import split_classes
from modzoo.engine.loops.incremental_loop import params_per_task
from modzoo.registry import MODELS, TRANSFORMS

ROOT = osp.join(osp.dirname(__file__), '..', '..')
CONFIGS = osp.join(ROOT, 'configs', 'multilane')


def config(name):
    return Config.fromfile(osp.join(CONFIGS, f'{name}.py'))


def trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_every_config_parses():
    names = sorted(osp.basename(p) for p in glob.glob(osp.join(CONFIGS, '*.py')))
    assert 'multilane-tiny_synth-voc-b3c2.py' in names and len(names) == 11
    for name in names:
        cfg = Config.fromfile(osp.join(CONFIGS, name))
        assert cfg.model.type in ('MultiLane', 'MultiTaskModel')


@pytest.mark.parametrize('name,tasks,per_task,total', [
    ('multilane_vit-b16_coco-b0c10', 8, 168_960, 1_413_200),
    ('multilane_vit-b16_coco-b40c10', 5, 168_960, 906_320),
    ('multilane_vit-b16_voc-b0c4', 5, 84_480, 437_780),
    ('multilane_vit-b16_voc-b10c2', 6, 84_480, 522_260),
])
def test_paper_configs_trainable_parameters(name, tasks, per_task, total):
    cfg = config(name)
    assert len(cfg.model.head.class_mask) == tasks == cfg.model.backbone.num_tasks
    cfg.model.backbone.pretrained = False
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    # what the IncrementalLoop logs at each task
    assert f'{params_per_task(model):,}' == f'{per_task:,}'
    assert trainable(model) == total


def test_paper_class_orders_are_alphabetical():
    coco = config('multilane_vit-b16_coco-b0c10')
    assert [coco.coco_classes[c] for c in coco.model.head.class_mask[0]] == [
        'airplane', 'apple', 'backpack', 'banana', 'baseball bat', 'baseball glove', 'bear',
        'bed', 'bench', 'bicycle']
    voc = config('multilane_vit-b16_voc-b10c2')
    assert [voc.voc_classes[c] for c in voc.model.head.class_mask[1]] == ['diningtable', 'dog']
    assert voc.train_dataloader.dataset.sources.multilabel.dataset.split == 'trainval'


@pytest.mark.parametrize('name,classes', [('multilane_vit-b16_coco-b40c10', 80),
                                          ('multilane_vit-b16_voc-b0c4', 20)])
def test_paper_models_run_forward(name, classes):
    cfg = config(name)
    cfg.model.backbone.pretrained = False
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    model.next_task()
    image = dict(inputs=[torch.randint(0, 256, (3, 224, 224), dtype=torch.uint8)],
                 data_samples=[BaseDataElement()])
    with torch.no_grad():
        sample = model.test_step(image)[0]
    seen = sorted(c for task in cfg.model.head.class_mask[:2] for c in task)
    assert sample.pred_scores.shape == (classes, )
    unseen = [c for c in range(classes) if c not in seen]
    assert torch.all(sample.pred_scores[unseen] == 0.5)       # logit 0: not seen yet
    assert torch.all(sample.pred_scores[seen] != 0.5)


@pytest.mark.parametrize('name', ['multilane-tiny_synth-voc-b3c2',
                                  'multilane-tiny_synth-voc-b3c2_task-identifier',
                                  'multilane-tiny_synth-coco-b3c2',
                                  'linear-probe_vit-tiny-d6-p8_synth-voc-b3c2',
                                  'multilane-tiny_synth-imagenet-b3c2',
                                  'linear-probe_vit-tiny-d6-p8_synth-imagenet-b3c2'])
def test_tiny_configs_build_and_train_a_step(name):
    cfg = config(name)
    assert cfg.train_cfg.class_split == dict(base=3, increment=2)
    if cfg.model.type == 'MultiLane':
        cfg.model.pretrained = None
        mask = cfg.model.head.class_mask
        assert mask == split_classes(cfg.synth_voc_classes, base=3, increment=2)
        assert [cfg.synth_voc_classes[c] for c in mask[0]] == ['blue_box', 'brown_capsule',
                                                               'cyan_sphere']
    else:
        cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    batch = dict(inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)] * 2,
                 data_samples=[])
    single_label = cfg.train_cfg.get('multi_label') is False
    first_task = split_classes(cfg.synth_voc_classes, base=3, increment=2)[0]
    for label in first_task[:2]:   # blue_box, brown_capsule
        sample = BaseDataElement(metainfo=dict(tasks=('cls' if single_label else 'multilabel', )))
        if single_label:
            sample.gt_label = torch.tensor(label)
        else:
            sample.gt_labels = torch.eye(11)[label]
        batch['data_samples'].append(sample)
    data = model.data_preprocessor(batch, training=True)
    losses = model(**data, mode='loss')
    loss = sum(value for key, value in losses.items() if key.startswith('loss'))
    loss.backward()
    assert torch.isfinite(loss)


def test_tiny_coco_twin_reads_the_coco_layout():
    train = config('multilane-tiny_synth-coco-b3c2').train_dataloader.dataset
    dataset = train.sources.multilabel.dataset
    assert dataset.type == 'CocoDataset' and dataset.multilabel and not dataset.with_mask
    assert dataset.data_root == 'coco' and train.data_root == 'data/synth'


def test_plot_incremental(tmp_path):
    results = dict(split='B1-C1', tasks=[
        dict(task=0, classes=['a'], metrics={'ml/mAP': 90., 'ml/CF1': 50.}),
        dict(task=1, classes=['b'], metrics={'ml/mAP': 70., 'ml/CF1': 40.})],
        summary={'avg/ml/mAP': 80., 'last/ml/mAP': 70., 'last/ml/CF1': 40.})
    with open(tmp_path / 'incremental_results.json', 'w') as f:
        json.dump(results, f)
    out = tmp_path / 'curve.png'
    printed = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'analysis', 'plot_incremental.py'),
         str(tmp_path), '--labels', 'run', '--key', 'ml/mAP', '--out', str(out),
         '--table-keys', 'mAP', 'CF1', 'OF1'],
        capture_output=True, text=True, check=True).stdout
    assert out.stat().st_size > 1000
    assert '| run | 80.0 | 70.0 | 40.0 | - |' in printed


def test_paper_pipelines_give_224_crops():
    cfg = config('multilane_vit-b16_coco-b0c10')
    for pipeline in (cfg.train_pipeline, cfg.test_pipeline):
        transform = Compose([TRANSFORMS.build(t) for t in pipeline[1:]])
        img = np.random.default_rng(0).integers(0, 255, (375, 500, 3), dtype=np.uint8)
        packed = transform(dict(img=img, img_shape=(375, 500), ori_shape=(375, 500)))
        assert packed['inputs'].shape == (3, 224, 224)
    # the short side to 256, then the central 224 (torchvision Resize(256) + CenterCrop(224))
    resize = TRANSFORMS.build(cfg.test_pipeline[1])
    assert resize(dict(img=img, img_shape=(375, 500)))['img'].shape == (256, 341, 3)


def test_tiny_configs_load_the_pretrained_backbone(tmp_path):
    """model.pretrained: the `backbone.` weights of a modzoo ViT checkpoint (as the
    pre-training config writes it) go into MULTI-LANE's frozen ViT and the probe's ViT."""
    pretrain = config('vit-tiny-d6-p8_synth-imagenet_pretrain')
    torch.manual_seed(1)
    source = MODELS.build(pretrain.model)
    path = str(tmp_path / 'iter_800.pth')
    torch.save(dict(state_dict=source.state_dict(), meta=dict()), path)
    expected = {k[len('backbone.'):]: v for k, v in source.state_dict().items()
                if k.startswith('backbone.')}
    cfg = config('multilane-tiny_synth-voc-b3c2')
    cfg.model.pretrained = path
    vit = MODELS.build(cfg.model).backbone.vit.state_dict()
    assert set(vit) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(vit[key], value, rtol=0, atol=0, msg=key)
    probe = config('linear-probe_vit-tiny-d6-p8_synth-voc-b3c2')
    probe.model.backbone.init_cfg.checkpoint = path
    model = MODELS.build(probe.model)
    model.init_weights()
    torch.testing.assert_close(model.backbone.state_dict()['blocks.5.mlp.fc2.weight'],
                               expected['blocks.5.mlp.fc2.weight'], rtol=0, atol=0)
