"""Mistakes a newcomer makes fail at once, naming what is wrong, before anything is built."""
import glob
import os
import re

import pytest
from mmengine.config import Config
from mmengine.runner.checkpoint import _load_checkpoint
from tool_runner import QUICKSTART, REPO, run_failing_tool
from torch import nn

from modzoo.engine import UnknownTypeError, check_types, use_safe_checkpoints
from modzoo.hub import UnsupportedSchemeError, resolve
from modzoo.weights import load_weights


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
