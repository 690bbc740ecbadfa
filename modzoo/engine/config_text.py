"""Format a config's text once per process.

mmengine formats ``cfg.pretty_text`` with yapf at each of its uses in a run: the log, the
runtime information hook and the two dumped copies. yapf takes 1.5-5 s for a tiny config on
the shared 2-core CPU (idle to loaded), so four uses added 6-20 s to each ``tools/train.py``
or ``tools/test.py`` call. yapf's ``FormatCode`` is a pure function of the text and the
style: remembering its last results gives the same text at the cost of one call.
"""
import functools

import mmengine.config.config as mmengine_config


def format_config_text_once() -> None:
    """Make mmengine's config formatting remember its results (idempotent)."""
    format_code = mmengine_config.FormatCode
    if hasattr(format_code, 'cache_info'):
        return

    @functools.lru_cache(maxsize=8)
    def remembered(text, style_items, kwarg_items):
        return format_code(text, style_config=dict(style_items), **dict(kwarg_items))

    @functools.wraps(format_code)
    def format_once(text, style_config, **kwargs):
        return remembered(text, tuple(sorted(style_config.items())),
                          tuple(sorted(kwargs.items())))

    format_once.cache_info = remembered.cache_info
    mmengine_config.FormatCode = format_once
