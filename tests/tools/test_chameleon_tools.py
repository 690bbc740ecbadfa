"""Chameleon's leave-task-out evaluation tool on a tiny generated pool, and episodic
meta-training in two gloo processes (torchrun, mmengine's DDP)."""
import json
import math
from pathlib import Path

import pytest
import torch

from modzoo.zoo import init_model

from tool_runner import load_tool, run_tool

CONFIG = Path(__file__).resolve().parents[2] / 'configs' / 'chameleon' / \
    'chameleon-tiny_synth-episodes.py'
fewshot_eval = load_tool('analysis/chameleon_fewshot_eval.py')


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('ckpt') / 'tiny.pth'
    torch.save(dict(state_dict=init_model(str(CONFIG)).state_dict()), path)
    return str(path)


def evaluate(checkpoint, *extra):
    return fewshot_eval.main([str(CONFIG), checkpoint, '--json', '--families', 'semseg',
                              'normals', '--semseg-classes', '2', '--num-query', '3',
                              '--eval-scenes', '24', '--full-scenes', '16', '--steps', '2',
                              '--full-steps', '2', *extra])


def test_fewshot_eval_reports_every_task_shot_and_method(checkpoint, capsys):
    assert evaluate(checkpoint, '--shots', '1', '2') == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = report['rows']
    assert [(r['task'], r['k']) for r in rows] == [
        ('semseg/class2', 1), ('semseg/class2', 2), ('normals', 1), ('normals', 2)]
    methods = ('chameleon', 'head_from_scratch', 'head_full_labels')
    for row in rows:
        metric = 'iou' if row['task'].startswith('semseg') else 'mae'
        for method in methods:
            value = row[method][metric]
            assert (0 <= value <= 100) if metric == 'iou' else (0 <= value <= 1), row
    # (b) does not depend on K: one head trained on the full labels serves every K
    assert rows[0]['head_full_labels'] == rows[1]['head_full_labels']
    assert report['steps'] == 2 and report['num_query'] == 3


def test_fewshot_eval_names_a_pool_too_small_for_the_shots(checkpoint):
    with pytest.raises(ValueError, match=r'normals: 24 of the --eval-scenes 24 scenes show '
                                         r'it, fewer than --num-query 3 \+ the largest of '
                                         r'--shots 30'):
        evaluate(checkpoint, '--families', 'normals', '--shots', '30')


def test_meta_training_in_two_gloo_processes(tmp_path):
    """Two ranks, each drawing its own episodes (mmengine's sampler shards the indices),
    train 2 iterations in sync and write one checkpoint."""
    work_dir = tmp_path / 'ddp'
    proc = run_tool('tools/train.py', str(CONFIG), '--work-dir', str(work_dir), '--launcher',
                    'pytorch', '--cfg-options', 'train_cfg.max_iters=2', 'param_scheduler=[]',
                    'default_hooks.logger.interval=1', 'train_dataloader.batch_size=1',
                    'train_dataloader.dataset.num_scenes=16', 'train_dataloader.dataset.shot=2',
                    'train_dataloader.dataset.query=2', 'train_dataloader.dataset.channels=2',
                    nproc=2, timeout=240)
    log = proc.stdout + proc.stderr
    assert 'Distributed training: True' in log
    last = next(line for line in log.splitlines() if 'Iter(train) [2/2]' in line)
    assert math.isfinite(float(last.split(' loss: ')[1].split()[0]))
    ckpt = torch.load(work_dir / 'iter_2.pth', weights_only=False)
    assert ckpt['meta']['iter'] == 2
    assert ckpt['state_dict'].keys() == init_model(str(CONFIG)).state_dict().keys()
