"""tools/fewshot.py: adapt to a new task from a tiny generated folder; bad folders."""
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from modzoo.datasets.synth import make_scene
from modzoo.zoo import init_model

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'configs' / 'chameleon' / 'chameleon-tiny_synth-episodes.py'
spec = importlib.util.spec_from_file_location('fewshot', ROOT / 'tools' / 'fewshot.py')
fewshot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fewshot)


def write_folder(root, indices, size=48, labels=True, channels=1):
    """SynthScenes images and saliency (1 channel) or normals (3) labels."""
    (root / 'images').mkdir(parents=True)
    (root / 'labels').mkdir()
    for i in indices:
        _, r = make_scene(1, i, size)
        cv2.imwrite(str(root / 'images' / f'{i:03d}.png'), r.image[..., ::-1])
        if labels:
            if channels == 1:
                cv2.imwrite(str(root / 'labels' / f'{i:03d}.png'), r.saliency)
            else:
                np.save(root / 'labels' / f'{i:03d}.npy', (r.normal + 1) / 2)
    return root


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = init_model(str(CONFIG))
    path = tmp_path_factory.mktemp('ckpt') / 'tiny.pth'
    torch.save(dict(state_dict=model.state_dict()), path)
    return path


def test_fewshot_end_to_end(tmp_path, checkpoint, capsys):
    support = write_folder(tmp_path / 'support', range(3))
    query = write_folder(tmp_path / 'query', range(3, 5))
    out = tmp_path / 'out'
    rc = fewshot.main([str(CONFIG), str(checkpoint), '--support', str(support), '--query',
                       str(query), '--out', str(out), '--steps', '3'])
    assert rc == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= metrics['iou'] <= 100
    pred = np.load(out / '003.npy')
    assert pred.shape == (48, 48, 1) and 0 <= pred.min() and pred.max() <= 1
    assert cv2.imread(str(out / '004.png'), cv2.IMREAD_UNCHANGED).shape == (48, 48)


def test_three_channel_npy_labels_without_query_labels(tmp_path, checkpoint):
    support = write_folder(tmp_path / 'support', range(2), channels=3)
    query = write_folder(tmp_path / 'query', [7], labels=False)
    out = tmp_path / 'out'
    assert fewshot.main([str(CONFIG), str(checkpoint), '--support', str(support), '--query',
                         str(query), '--out', str(out), '--steps', '2']) == 0
    assert np.load(out / '007.npy').shape == (48, 48, 3) and not (out / 'metrics.json').exists()


def run(tmp_path, support, query):
    return fewshot.main([str(CONFIG), 'unused.pth', '--support', str(support), '--query',
                         str(query), '--out', str(tmp_path / 'out')])


def test_missing_label_is_named(tmp_path):
    support = write_folder(tmp_path / 'support', range(2))
    (support / 'labels' / '001.png').unlink()
    with pytest.raises(FileNotFoundError, match=r'001\.png has no label'):
        run(tmp_path, support, write_folder(tmp_path / 'query', [5]))


def test_empty_support_is_k0(tmp_path):
    support = tmp_path / 'support'
    (support / 'images').mkdir(parents=True)
    with pytest.raises(ValueError, match='K=0'):
        run(tmp_path, support, write_folder(tmp_path / 'query', [5]))


def test_size_and_channel_mismatches_are_named(tmp_path):
    support = write_folder(tmp_path / 'support', range(2))
    query = write_folder(tmp_path / 'query', [5], size=40)
    with pytest.raises(ValueError, match=r'005\.png: image size \(40, 40\) differs'):
        run(tmp_path, support, query)
    query3 = write_folder(tmp_path / 'query3', [6], channels=3)
    with pytest.raises(ValueError, match=r'006\.npy: 3 label channels, the support labels '
                                         r'have 1'):
        run(tmp_path, support, query3)
