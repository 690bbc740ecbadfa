import mmengine.config.config as mmengine_config
from mmengine.config import Config

from modzoo.engine.config_text import format_config_text_once


def test_config_text_is_formatted_once_and_as_yapf_formats_it(monkeypatch):
    format_config_text_once()
    format_config_text_once()  # idempotent: one layer of memory
    format_once = mmengine_config.FormatCode
    assert not hasattr(format_once.__wrapped__, 'cache_info')
    cfg = Config(dict(model=dict(type='TestConfigText', depths=[2, 2, 6, 2]), name='once'))
    misses, hits = format_once.cache_info().misses, format_once.cache_info().hits
    text = cfg.pretty_text
    assert cfg.pretty_text == text and Config(cfg.to_dict()).pretty_text == text
    assert format_once.cache_info().misses == misses + 1
    assert format_once.cache_info().hits == hits + 2
    cfg.model.depths = [1]  # a changed config is formatted anew
    assert 'depths=[\n        1,\n    ]' in cfg.pretty_text
    assert format_once.cache_info().misses == misses + 2
    cfg.model.depths = [2, 2, 6, 2]
    monkeypatch.setattr(mmengine_config, 'FormatCode', format_once.__wrapped__)
    assert cfg.pretty_text == text  # what yapf itself gives
