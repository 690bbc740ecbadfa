"""SynthScenes is rendered only where asked: a mistyped data_root fails and writes nothing."""
import os

import pytest

from modzoo.datasets import MultiTaskDataset
from modzoo.datasets.synth import generate_synth_scenes
from modzoo.datasets.synth.ensure import ensure_synth_data

TINY = dict(num_train=2, num_val=1, size=32, workers=1, progress=False)


def test_a_mistyped_data_root_raises_and_writes_nothing(tmp_path):
    root = tmp_path / 'dta' / 'synth'
    sources = dict(
        cls=dict(tasks=['cls'], dataset=dict(type='ImageNetDataset', data_root='imagenet')),
        depth=dict(tasks=['depth'], dataset=dict(type='NYUDDataset', data_root='nyud')))
    with pytest.raises(FileNotFoundError) as error:
        MultiTaskDataset(sources, data_root=str(root), synth_if_missing=True)
    message = str(error.value)
    assert f'missing {root}/imagenet, {root}/nyud' in message
    assert f'python tools/make_synth_data.py --out {root}' in message
    assert 'only at data/synth' in message
    assert not (tmp_path / 'dta').exists()


def test_synthscenes_renders_where_the_config_marks_it(tmp_path):
    marked = str(tmp_path / 'marked')
    assert ensure_synth_data(marked, render_at=marked, **TINY) == marked
    assert {'ade20k', 'coco', 'imagenet', 'nyud'} <= set(os.listdir(marked))
    with pytest.raises(FileNotFoundError, match='other'):
        ensure_synth_data(str(tmp_path / 'other'), render_at=marked, **TINY)


def test_generator_accepts_an_empty_folder_and_overwrites_only_when_told(tmp_path):
    out = tmp_path / 'empty'
    out.mkdir()
    generate_synth_scenes(str(out), **TINY)
    files = sorted(p.relative_to(out) for p in out.rglob('*'))
    (out / 'mine.txt').write_text('x')
    with pytest.raises(FileExistsError, match='not empty.*--overwrite'):
        generate_synth_scenes(str(out), **TINY)
    generate_synth_scenes(str(out), overwrite=True, **TINY)
    assert sorted(p.relative_to(out) for p in out.rglob('*')) == files
    assert [p.name for p in tmp_path.iterdir()] == ['empty']  # no temp or old folder left
