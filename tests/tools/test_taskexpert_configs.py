"""TaskExpert configs (full-size and tiny), the dense protocol they set, and the tools around
them: Δm in tools/test.py, gate maps with --show-dir, tools/train_single_task.py."""
import glob
import importlib.util
import json
import os.path as osp

import mmcv
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

from modzoo.evaluation import primary_metric_keys
from modzoo.registry import DATASETS, METRICS, MODELS
from modzoo.structures import TaskDataSample

from tool_runner import REPO, run_tool, tiny_config

CONFIGS = osp.join(REPO, 'configs')
FULL = {
    'taskexpert/taskexpert_vit-l16_pascal-context-512x512.py': (
        (512, 512), dict(semseg=1.0, parts=2.0, saliency=5.0, normals=10.0, edge=50.0)),
    'taskexpert/taskexpert_vit-l16_nyud-448x576.py': (
        (448, 576), dict(semseg=1.0, depth=1.0, normals=10.0, edge=50.0)),
}
TINY = ['taskexpert/taskexpert_vit-tiny-p8_synth-nyud.py',
        'taskexpert/shared-heads_vit-tiny-p8_synth-nyud.py',
        'taskexpert/taskexpert_vit-tiny-p8_synth-pascal.py',
        'taskexpert/shared-heads_vit-tiny-p8_synth-pascal.py']
# a gt of every dense field: (key, make(size) -> tensor)
GT = {
    'semseg': ('gt_sem_seg', lambda s: torch.randint(0, 13, s)),
    'parts': ('gt_parts', lambda s: torch.randint(0, 7, s)),
    'saliency': ('gt_saliency', lambda s: torch.randint(0, 2, s)),
    'normals': ('gt_normal', lambda s: torch.nn.functional.normalize(torch.randn(3, *s), dim=0)),
    'depth': ('gt_depth', lambda s: torch.rand(s) + 1),
    'edge': ('gt_edge', lambda s: torch.randint(0, 2, s)),
}


def load_tool(name):
    """A tools/ script as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f'tool_{name}', osp.join(REPO, 'tools',
                                                                           f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_synth(cfg, data_root):
    """``cfg`` with every loader reading the SynthScenes at ``data_root``."""
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = data_root
    return cfg


@pytest.mark.parametrize('name', list(FULL))
def test_full_size_configs_follow_invpt_and_train_a_step_at_full_size(name):
    size, weights = FULL[name]
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    assert cfg.optim_wrapper.optimizer == dict(type='Adam', lr=2e-5, weight_decay=1e-6)
    assert cfg.train_cfg.max_iters == 40000 and cfg.train_cfg.val_interval == 1000
    poly, = cfg.param_scheduler
    assert (poly.type, poly.power, poly.eta_min, poly.end) == ('PolyLR', 0.9, 0.0, 40000)
    assert cfg.model.loss_weights == weights
    assert cfg.model.backbone.arch == 'large' and cfg.model.backbone.patch_size == 16
    assert cfg.model.backbone.out_indices == (5, 11, 17, 23)  # InvPT's taps 6, 12, 18, 24
    train = [t.type for t in cfg.train_dataloader.dataset.sources.popitem()[1].dataset.pipeline]
    assert train == ['LoadImage', 'LoadTaskAnnotations', 'RandomScale', 'RandomCrop',
                     'RandomFlip', 'PhotoMetricDistortion', 'Pad', 'PackTaskInputs']
    test = cfg.test_dataloader.dataset.sources.popitem()[1].dataset.pipeline
    assert [t.type for t in test] == ['LoadImage', 'LoadTaskAnnotations', 'Pad',
                                      'PackTaskInputs']  # the padded canvas, no resize
    assert test[2].size == size
    # the real structure, at the real size, on the meta device (no memory, no compute)
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
        assert 300e6 < sum(p.numel() for p in model.parameters()) < 330e6
        samples = []
        for _ in range(2):
            sample = TaskDataSample(metainfo=dict(tasks=tuple(weights), img_shape=size,
                                                  pad_shape=size))
            for task in weights:
                key, make = GT[task]
                sample.set_field(make(size), key)
            samples.append(sample)
        losses = model(torch.empty(2, 3, *size), samples, mode='loss')
        assert set(losses) == {f'loss_{task}' for task in weights}
        sum(losses.values()).backward()
        feats = model(torch.empty(2, 3, *size), mode='tensor')
    for task in weights:
        assert feats[task].maps[0].shape == (2, 256, size[0] // 16, size[1] // 16)
        assert model.neck.layers[-1].gates[task].fc.weight.grad is not None


@pytest.mark.parametrize('name', TINY)
def test_tiny_configs_train_a_step_on_synth(name, tiny_synth):
    cfg = on_synth(Config.fromfile(osp.join(CONFIGS, name)), tiny_synth)
    model = MODELS.build(cfg.model)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    data = model.data_preprocessor(pseudo_collate([dataset[0], dataset[1]]), True)
    losses = model(**data, mode='loss')
    assert set(losses) == {f'loss_{task}' for task in cfg.model.heads}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert (cfg.model.get('neck') is not None) == name.startswith('taskexpert/taskexpert')


@pytest.mark.parametrize('base, tasks', [
    ('nyud.py', ('semseg', 'depth', 'normals', 'edge')),
    ('pascal_context.py', ('semseg', 'parts', 'saliency', 'normals', 'edge')),
])
def test_padded_pixels_are_never_counted(base, tasks, tiny_synth):
    """The real datasets' test pipelines pad a 32 px image to the full canvas; a prediction
    that is perfect on the image and garbage on the padding scores perfectly."""
    cfg = Config.fromfile(osp.join(CONFIGS, '_base_', 'datasets', base))
    source = cfg.test_dataloader.dataset.sources.popitem()[1].dataset
    layout = 'nyud' if base == 'nyud.py' else 'pascal_context'
    source.update(data_root=osp.join(tiny_synth, layout), metainfo=dict(
        classes=[str(i) for i in range(13)]))
    if layout == 'pascal_context':
        source.normal_classes = None  # the synth LabelMap holds the semantic index
    dataset = DATASETS.build(source)
    metrics = [METRICS.build(dict(m, num_classes=13) if m.task == 'semseg' else m)
               for m in cfg.test_evaluator]
    canvas = tuple(source.pipeline[2].size)
    samples = []
    for i in range(8):
        sample = dataset[i]['data_samples']
        assert sample.pad_shape == canvas and sample.img_shape == (32, 32)
        pad = torch.ones(canvas, dtype=torch.bool)
        pad[:32, :32] = False
        out = sample.to_dict()
        for task in tasks:
            key, make = GT[task]
            gt = sample.get(key)
            ignore = 0 if key in ('gt_depth', 'gt_normal') else 255
            assert (gt[..., pad] == ignore).all()  # the padding carries the ignore value
            garbage = make(canvas)
            if key in ('gt_edge', 'gt_saliency'):
                garbage = garbage.float()
            pred = torch.where(pad, garbage, torch.where(gt == 255, 0, gt).to(garbage.dtype))
            out['pred_' + key[len('gt_'):]] = pred
        out['tasks'] = tasks
        samples.append(out)
    results = {}
    for metric in metrics:
        metric.process({}, samples)
        results.update(metric.evaluate(len(samples)))
    expected = {'semseg/mIoU': 100, 'parts/mIoU': 100, 'saliency/maxF': 100, 'depth/rmse': 0,
                'normals/mean_angle': 0, 'edge/odsF': 100}
    for key, value in expected.items():
        if key.split('/')[0] in tasks:
            assert results[key] == pytest.approx(value, abs=1e-3), key


def test_taskexpert_tiny_loss_goes_down_then_test_reports_delta_m_and_gate_maps(
        tiny_synth, tmp_path):
    base = osp.join(CONFIGS, 'taskexpert', 'taskexpert_vit-tiny-p8_synth-nyud.py')
    cfg = tiny_config(tmp_path, tiny_synth, max_iters=20, base=base)
    work_dir = str(tmp_path / 'work')
    run_tool('tools/train.py', cfg, '--work-dir', work_dir, '--no-validate',
             '--cfg-options', 'optim_wrapper.optimizer.lr=0.002')
    scalars = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))[-1]
    with open(scalars) as f:
        records = [json.loads(line) for line in f if 'loss' in line]
    losses = [r['loss'] for r in records if 'loss' in r]
    third = len(losses) // 3
    assert sum(losses[-third:]) < sum(losses[:third]), f'loss did not go down: {losses}'

    baselines = dict(zip(['semseg/mIoU', 'depth/rmse', 'normals/mean_angle', 'edge/odsF'],
                         [40.0, 2.0, 30.0, 50.0]))
    st_json, out, show = tmp_path / 'st.json', str(tmp_path / 'mt.json'), tmp_path / 'show'
    st_json.write_text(json.dumps(baselines))
    proc = run_tool('tools/test.py', cfg, osp.join(work_dir, 'iter_20.pth'), '--work-dir',
                    str(tmp_path / 'test'), '--out', out, '--baselines', str(st_json),
                    '--show-dir', str(show), '--show-num', '1')
    with open(out) as f:
        metrics = json.load(f)
    gains = [(metrics['semseg/mIoU'] - 40) / 40, -(metrics['depth/rmse'] - 2) / 2,
             -(metrics['normals/mean_angle'] - 30) / 30, (metrics['edge/odsF'] - 50) / 50]
    assert metrics['delta_m'] == pytest.approx(100 * sum(gains) / 4)
    assert metrics['delta_m/depth/rmse'] == pytest.approx(100 * gains[1])
    assert f"Δm: {metrics['delta_m']:+.2f}%" in proc.stdout

    folders = sorted(glob.glob(str(show / '*')))
    assert [osp.basename(f) for f in folders] == ['nyud_000017']  # the first val image
    names = sorted(osp.basename(p) for p in glob.glob(osp.join(folders[0], '*.png')))
    assert names == sorted(['input.png'] + [f'{t}_{k}.png' for t in
                                            ('semseg', 'depth', 'normals', 'edge')
                                            for k in ('pred', 'gt')] +
                           [f'{t}_gates_layer{i}.png' for t in
                            ('semseg', 'depth', 'normals', 'edge') for i in range(4)])
    assert mmcv.imread(osp.join(folders[0], 'input.png')).shape == (32, 32, 3)  # no padding
    # 6 experts + the memory, 32 px each, 2 px apart
    gates = mmcv.imread(osp.join(folders[0], 'edge_gates_layer3.png'))
    assert gates.shape == (32, 7 * 32 + 6 * 2, 3)


def test_delta_m_keys_and_a_worked_example():
    tool = load_tool('test')
    cfg = Config.fromfile(osp.join(CONFIGS, 'taskexpert',
                                   'taskexpert_vit-tiny-p8_synth-pascal.py'))
    assert primary_metric_keys(cfg.test_evaluator) == [
        'semseg/mIoU', 'parts/mIoU', 'saliency/maxF', 'normals/mean_angle', 'edge/odsF']
    # +25% mIoU, rmse 0.5 for 0.4 is -25%, 20 degrees for 25 is +20%, odsF equal: Δm = +5%
    mt = {'semseg/mIoU': 50.0, 'depth/rmse': 0.5, 'normals/mean_angle': 20.0, 'edge/odsF': 70}
    st = {'semseg/mIoU': 40.0, 'depth/rmse': 0.4, 'normals/mean_angle': 25.0, 'edge/odsF': 70}
    report = tool.delta_m_report(mt, st, list(mt))
    assert report['delta_m'] == pytest.approx(5.0)
    assert report['delta_m/depth/rmse'] == pytest.approx(-25.0)
    with pytest.raises(KeyError, match="no primary metric is known for evaluator type 'Foo'"):
        primary_metric_keys([dict(type='Foo', task='x')])


def test_single_task_config_keeps_one_task(tmp_path):
    tool = load_tool('train_single_task')
    cfg = Config.fromfile(osp.join(CONFIGS, 'taskexpert',
                                   'taskexpert_vit-tiny-p8_synth-pascal.py'))
    single = tool.single_task_config(cfg, 'parts')
    assert list(single.model.heads) == ['parts']
    assert single.model.loss_weights == dict(parts=2.0)
    assert single.model.neck.tasks == ['parts']
    for split in ('train', 'val', 'test'):
        sources = single[f'{split}_dataloader'].dataset.sources
        assert {name: s.tasks for name, s in sources.items()} == dict(pascal=['parts'])
    assert [m.task for m in single.test_evaluator] == ['parts']
    assert len(cfg.model.heads) == 5  # the multi-task config is left as it was
    with pytest.raises(KeyError, match="task 'depth' has no head"):
        tool.single_task_config(cfg, 'depth')
    for task, metrics in dict(a={'a/x': 1.0}, b={'b/y': 2.0}).items():
        (tmp_path / task).mkdir()
        (tmp_path / task / 'metrics.json').write_text(json.dumps(metrics))
    assert tool.merge_metrics(str(tmp_path), ['a', 'b', 'c']) == {'a/x': 1.0, 'b/y': 2.0}
