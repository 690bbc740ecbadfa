"""tools/analysis/plot_curves.py reads mmengine's scalars.json and plots the asked keys."""
import json

import matplotlib.image
import pytest

from tool_runner import load_tool

plot_curves = load_tool('analysis/plot_curves.py')


def write_run(work_dir):
    records = [dict(loss=1.0 / i, loss_cls=2.0 / i, lr=0.1, iter=i, step=i) for i in (1, 2, 3)]
    records.append({'semseg/mIoU': 40.0, 'step': 3})
    folder = work_dir / '20250101_000000' / 'vis_data'
    folder.mkdir(parents=True)
    (folder / 'scalars.json').write_text('\n'.join(json.dumps(r) for r in records))


def test_curves_of_training_and_validation_keys(tmp_path):
    write_run(tmp_path / 'run')
    curves = plot_curves.read_curves(plot_curves.scalars_file(str(tmp_path / 'run')),
                                     ['loss_cls', 'semseg/mIoU'])
    assert curves == {'loss_cls': ([1, 2, 3], [2.0, 1.0, 2.0 / 3]),
                      'semseg/mIoU': ([3], [40.0])}
    out = tmp_path / 'curves.png'
    plot_curves.main([str(tmp_path / 'run'), '--keys', 'loss_cls', 'semseg/mIoU',
                      '--out', str(out)])
    assert matplotlib.image.imread(str(out)).shape[0] > 300  # two panels


def test_unknown_keys_and_folders_are_named(tmp_path):
    write_run(tmp_path / 'run')
    with pytest.raises(KeyError, match=r"\['depth/rmse'\].*loss, loss_cls, lr, semseg/mIoU"):
        plot_curves.main([str(tmp_path / 'run'), '--keys', 'depth/rmse'])
    with pytest.raises(FileNotFoundError, match='no \\*/vis_data/scalars.json'):
        plot_curves.main([str(tmp_path)])
