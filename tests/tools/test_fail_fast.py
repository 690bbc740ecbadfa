"""Mistakes a newcomer makes fail at once, naming what is wrong, before anything is built."""
import glob
import json
import os
import re
import sys

import pytest
from mmengine.config import Config
from mmengine.runner.checkpoint import _load_checkpoint
from torch import nn

from modzoo.engine import UnknownTypeError, check_types, use_safe_checkpoints
from modzoo.engine.type_check import registered_names
from modzoo.hub import UnsupportedSchemeError, resolve
from modzoo.type_names import cache_file, cache_key, cached_names, check_cached_types
from modzoo.weights import load_weights

from tool_runner import QUICKSTART, REPO, load_tool, run_failing_tool


@pytest.mark.parametrize('source', ['ftp://host/w.pth', 's3://bucket/w.pth',
                                    'htps://host/w.pth'])
def test_unknown_url_schemes_list_the_supported_ones(source):
    scheme = source.split('://')[0]
    match = f'{re.escape(source)}.*{scheme}:// is not supported.*https://, hf://, timm:'
    with pytest.raises(UnsupportedSchemeError, match=match):
        resolve(source)
    with pytest.raises(UnsupportedSchemeError, match=match):
        load_weights(nn.Linear(1, 1), source)
    if scheme != 's3':  # mmengine has its own s3:// loader (petrel), which stays
        use_safe_checkpoints()
        with pytest.raises(UnsupportedSchemeError, match=match):
            _load_checkpoint(source)  # load_from, resume and init_cfg in a modzoo run


def test_a_mistyped_nested_type_names_its_key_path():
    cfg = Config.fromfile(QUICKSTART)
    cfg.model.heads.depth.type = 'DepthHaed'
    cfg.train_dataloader.dataset.sources.cls.dataset.pipeline[0].type = 'LoadImg'
    with pytest.raises(UnknownTypeError) as error:
        check_types(cfg, 'my_config.py')
    assert str(error.value).splitlines() == [
        'my_config.py names types that no registry has:',
        "  model.heads.depth.type: 'DepthHaed' is not a registered type; did you mean "
        'DepthHead, DepthMetric?',
        "  train_dataloader.dataset.sources.cls.dataset.pipeline[0].type: 'LoadImg' is not a "
        'registered type; did you mean LoadImage?']


def test_every_shipped_config_names_registered_types():
    paths = glob.glob(os.path.join(REPO, 'configs', '*', '*.py'))  # none needs a generated file
    assert len(paths) > 20
    for path in paths:
        check_types(Config.fromfile(path), path)


def test_tools_fail_before_the_runner(tmp_path):
    config = tmp_path / 'typo.py'
    config.write_text(f"_base_ = [{QUICKSTART!r}]\nmodel = dict(heads=dict(depth=dict("
                      "type='DepthHaed')))\n")
    work_dir = tmp_path / 'work'
    out = run_failing_tool('tools/train.py', str(config), '--work-dir', str(work_dir))
    assert "model.heads.depth.type: 'DepthHaed' is not a registered type" in out
    out = run_failing_tool('tools/test.py', QUICKSTART, str(tmp_path / 'nowhere.pth'),
                           '--work-dir', str(work_dir))
    assert 'WeightsNotFoundError' in out and 'nowhere.pth' in out
    assert not work_dir.exists()  # no Runner was built: no log, no environment dump


def typo_config(tmp_path):
    config = tmp_path / 'typo.py'
    config.write_text(f"_base_ = [{QUICKSTART!r}]\nmodel = dict(heads=dict(depth=dict("
                      "type='DepthHaed')))\n")
    return str(config)


@pytest.mark.parametrize('tool', ['train.py', 'test.py', 'demo.py', 'train_single_task.py'])
def test_a_warm_cache_fails_a_typo_without_importing_torch(tool, tmp_path):
    check_types(Config.fromfile(QUICKSTART))  # the full check fills the cache
    assert cached_names() == registered_names()
    checkpoint = tmp_path / 'any.pth'  # tools/test.py resolves it first
    checkpoint.write_bytes(b'')
    args = [str(checkpoint)] if tool == 'test.py' else []
    out = run_failing_tool('-X', 'importtime', f'tools/{tool}', typo_config(tmp_path), *args,
                           '--work-dir', str(tmp_path / 'work'))
    assert "model.heads.depth.type: 'DepthHaed' is not a registered type; did you mean " \
        'DepthHead, DepthMetric?' in out
    imported = re.findall(r'^import time:.*\|\s*([\w.]+)$', out, re.MULTILINE)
    assert 'mmengine.config' in imported and 'torch' not in imported
    check_cached_types(Config(dict(custom_imports=dict(imports=['my_heads']),
                                   model=dict(type='MyHead'))))  # may register more names


def test_a_stale_cache_is_not_used(tmp_path):
    names = registered_names() | {'DepthHaed'}
    key = cache_key()
    key['versions']['torch'] = '0.0.1'
    os.makedirs(os.path.dirname(cache_file()))
    with open(cache_file(), 'w') as f:
        json.dump(dict(key=key, names=sorted(names)), f)
    assert cached_names() is None
    cfg = Config.fromfile(typo_config(tmp_path))
    check_cached_types(cfg)  # no usable cache: nothing to say yet
    with pytest.raises(UnknownTypeError, match='DepthHaed'):
        check_types(cfg)
    assert cached_names() == registered_names()  # rewritten under today's key


def test_a_config_the_cache_passes_still_gets_the_full_check(tmp_path, monkeypatch):
    os.makedirs(os.path.dirname(cache_file()))
    with open(cache_file(), 'w') as f:  # a cache that wrongly holds the typo
        json.dump(dict(key=cache_key(), names=sorted(registered_names() | {'DepthHaed'})), f)
    config = typo_config(tmp_path)
    check_cached_types(Config.fromfile(config))
    train = load_tool('train.py')
    monkeypatch.setattr(sys, 'argv', ['train.py', config, '--work-dir', str(tmp_path / 'w')])
    with pytest.raises(UnknownTypeError, match="model.heads.depth.type: 'DepthHaed'"):
        train.main()
    assert not (tmp_path / 'w').exists()
