"""Check every ``type=`` of a config against the registries before anything is built.

A typo deep in a config (``model.heads.depth.type='DepthHaed'``) would otherwise surface only
when the Runner builds that part, after the environment dump and the dataset set-up. Here it
fails at once, naming the key path and the closest registered names. The names found are cached
for the torch-free check of the next run (:mod:`modzoo.type_names`).
"""
from modzoo import registry
from modzoo.engine.checkpoint import write_atomic
from modzoo.type_names import (UnknownTypeError, cache_contents, cache_file, cached_names,
                               raise_unknown_types)

__all__ = ['UnknownTypeError', 'check_types', 'registered_names']


def registered_names() -> set:
    """Every name a modzoo config can build: the modzoo registries (their modules imported)
    and mmengine's root registries (``FUNCTIONS`` holds ``pseudo_collate``)."""
    import mmengine.dataset  # noqa: F401 (registers the collate functions)
    import mmengine.registry

    names = set()
    for value in vars(registry).values():
        if isinstance(value, registry.ModzooRegistry):
            value.import_from_location()
            names.update(value._all_names())
    for value in vars(mmengine.registry).values():
        if isinstance(value, mmengine.registry.Registry):
            names.update(value.module_dict)
    return names


def check_types(cfg, filename: str = None) -> None:
    """Raise :class:`UnknownTypeError` (a ``KeyError``) naming each ``type`` of ``cfg`` that no
    registry has, with its key path and the closest names. Without ``custom_imports`` the names
    are cached (written only when the cache does not hold them already)."""
    names = registered_names()
    if not cfg.get('custom_imports') and cached_names() != names:
        try:
            write_atomic(cache_file(), cache_contents(names))
        except OSError:  # a read-only home only loses the fast path
            pass
    raise_unknown_types(cfg, names, filename)
