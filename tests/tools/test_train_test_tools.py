"""The quickstart config through tools/train.py and tools/test.py, on tiny SynthScenes."""
import json
import os.path as osp
from collections import defaultdict

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from modzoo.engine import check_tasks
from modzoo.engine.checkpoint import load_from_local
from modzoo.engine.optimizers import bf16_support
from modzoo.registry import HOOKS

from tool_runner import QUICKSTART, run_tool, tiny_config


def _weights(path):
    return load_from_local(path)['state_dict']


@HOOKS.register_module(force=True)
class RecordLossesHook(Hook):
    """Keeps every iteration's losses, only for the tasks that batch trained."""

    def __init__(self):
        self.losses = defaultdict(list)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        for key, value in outputs.items():
            if key.startswith('loss_'):
                self.losses[key].append(value.item())


def test_quickstart_loss_goes_down(tiny_synth, tmp_path):
    cfg = Config.fromfile(tiny_config(tmp_path, tiny_synth, max_iters=60))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.custom_hooks = [dict(type='RecordLossesHook')]
    runner = Runner.from_cfg(cfg)
    runner.train()
    recorded = next(h for h in runner.hooks if isinstance(h, RecordLossesHook)).losses
    for task in ('cls', 'semseg', 'depth', 'multilabel'):
        losses = recorded[f'loss_{task}']
        assert len(losses) >= 6, f'{task} was sampled only {len(losses)} times'
        third = len(losses) // 3
        first, last = sum(losses[:third]) / third, sum(losses[-third:]) / third
        assert last < first, f'loss_{task} did not go down: {losses}'


def test_resume_gives_the_same_weights(tiny_synth, tmp_path):
    cfg = tiny_config(tmp_path, tiny_synth, max_iters=6)
    straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
    run_tool('tools/train.py', cfg, '--work-dir', straight, '--no-validate')
    # the same schedule, stopped after 3 iterations, then resumed for the other 3
    run_tool('tools/train.py', cfg, '--work-dir', resumed, '--no-validate',
             '--cfg-options', 'train_cfg.max_iters=3')
    assert osp.exists(osp.join(resumed, 'iter_3.pth'))
    # (resumed with glibc keeping freed memory: the same numbers)
    run_tool('tools/train.py', cfg, '--work-dir', resumed, '--no-validate', '--resume',
             '--cfg-options', 'env_cfg.keep_freed_memory=True')
    a, b = _weights(osp.join(straight, 'iter_6.pth')), _weights(osp.join(resumed, 'iter_6.pth'))
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f'weights differ after resume: {different[:5]}'
    # and tools/test.py evaluates the checkpoint into a json of every task's metrics
    out = str(tmp_path / 'metrics.json')
    run_tool('tools/test.py', cfg, osp.join(resumed, 'iter_6.pth'), '--work-dir',
             str(tmp_path / 'test'), '--out', out)
    with open(out) as f:
        metrics = json.load(f)
    for key in ('cls/top1', 'semseg/mIoU', 'depth/rmse', 'multilabel/mAP'):
        assert key in metrics, f'{key} missing from {sorted(metrics)}'


def test_torchrun_two_processes(tiny_synth, tmp_path):
    cfg = tiny_config(tmp_path, tiny_synth, max_iters=4)
    work_dir = str(tmp_path / 'ddp')
    proc = run_tool('tools/train.py', cfg, '--work-dir', work_dir, '--launcher', 'pytorch',
                    nproc=2)
    assert osp.exists(osp.join(work_dir, 'iter_4.pth'))
    assert 'Distributed training: True' in proc.stdout + proc.stderr


def test_demo_prints_every_metric_beside_the_prior(tmp_path, tiny_synth):
    cfg = tiny_config(tmp_path, tiny_synth, max_iters=2)
    work_dir = tmp_path / 'demo'
    amp = [] if bf16_support('cpu') else ['--amp']  # trains in bf16 where the CPU has it
    proc = run_tool('tools/demo.py', cfg, '--work-dir', str(work_dir), *amp)
    with open(work_dir / 'demo_metrics.json') as f:
        report = json.load(f)
    assert set(report) == {'train_seconds', 'amp', 'model', 'prior_baseline'}
    assert report['amp'] is bool(amp)
    # a quiet console: progress and the table; the config and environment go to the log file
    log_file = proc.stdout.split('full log: ')[1].split(')')[0]
    with open(log_file) as f:
        log = f.read()
    assert 'Config:' in log and 'Config:' not in proc.stdout
    assert 'Iter(train) [2/2]' in proc.stdout and len(proc.stdout.splitlines()) < 40
    if amp:
        assert "type='BF16OptimWrapper'" in log
    assert {'cls/top1', 'semseg/mIoU', 'depth/rmse', 'multilabel/mAP'} <= set(report['model'])
    rows = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()
            if line.split() and line.split()[0] in report['model']}
    assert set(rows) == set(report['model'])
    for key, (model, prior) in rows.items():
        assert float(model) == pytest.approx(report['model'][key], abs=1e-3)
        assert float(prior) == pytest.approx(report['prior_baseline'][key], abs=1e-3)


def test_tasks_without_heads_or_data_fail_at_build():
    cfg = Config.fromfile(QUICKSTART)
    del cfg.model.heads['depth']
    with pytest.raises(ValueError, match=r"source 'depth' labels task\(s\) \['depth'\]"):
        check_tasks(cfg)
    cfg = Config.fromfile(QUICKSTART)
    cfg.model.heads['normals'] = dict(type='NormalHead', in_channels=192)
    with pytest.raises(ValueError, match=r"\['normals'\] that no train_dataloader source"):
        check_tasks(cfg)
    cfg = Config.fromfile(osp.join(osp.dirname(QUICKSTART), '..', 'moe_vit',
                                   'moe-vit-tiny_synth_hetero.py'))
    check_tasks(cfg)
    cfg.model.backbone.tasks = ['cls', 'semseg', 'depth']
    with pytest.raises(ValueError, match=r"\['normals'\] that model.backbone.tasks \['cls', "
                                         r"'semseg', 'depth'\] has no router for"):
        check_tasks(cfg)
