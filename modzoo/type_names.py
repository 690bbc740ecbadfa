"""The ``type=`` names of a config, checked torch-free against a cache of the registered names.

The registries fill only as torch, timm and mmengine's runner are imported (seconds). The full
check (:mod:`modzoo.engine.type_check`) stores the names it found in
``$MODZOO_HOME/type_names.json``, keyed by the installed versions of the packages that register
names and by a fingerprint of modzoo's own sources; the next run reads them back without torch,
so a typo fails in about a second. A stale or missing cache is simply not used.
"""
import difflib
import glob
import importlib.metadata
import json
import os
import os.path as osp
from typing import Callable, Iterable, Iterator, Optional, Tuple

from mmengine.config import Config

from modzoo.hub import modzoo_home

REGISTERING_PACKAGES = ('torch', 'mmengine', 'timm', 'mmcv', 'torchvision')


class UnknownTypeError(KeyError):
    """A config names a ``type`` that no registry has (the message lists each key path)."""

    def __str__(self) -> str:  # KeyError would print the repr, newlines escaped
        return str(self.args[0])


def config_types(node, path: str = '') -> Iterator[Tuple[str, str]]:
    """``(key path, type name)`` of every ``type`` that names a registered class by a plain
    string (not ``'scope.Name'``, not a class), e.g. ``('model.heads.depth.type', 'DepthHead')``.
    Dicts that switch scope with ``_scope_`` are skipped."""
    if isinstance(node, dict):
        if '_scope_' in node:
            return
        obj_type = node.get('type')
        if isinstance(obj_type, str) and '.' not in obj_type:
            yield f'{path}.type' if path else 'type', obj_type
        for key, value in node.items():
            yield from config_types(value, f'{path}.{key}' if path else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from config_types(value, f'{path}[{i}]')


def raise_unknown_types(cfg, names: set, filename: Optional[str] = None) -> None:
    """Raise :class:`UnknownTypeError` naming each ``type`` of ``cfg`` not in ``names``, with
    its key path and the closest names."""
    unknown = [(path, name) for path, name in config_types(dict(cfg)) if name not in names]
    if not unknown:
        return
    lines = []
    for path, name in unknown:
        close = difflib.get_close_matches(name, sorted(names), n=3, cutoff=0.6)
        hint = f'; did you mean {", ".join(close)}?' if close else ''
        lines.append(f"  {path}: '{name}' is not a registered type{hint}")
    where = filename or getattr(cfg, 'filename', None) or 'the config'
    raise UnknownTypeError(f'{where} names types that no registry has:\n' + '\n'.join(lines))


def cache_file() -> str:
    """Where the registered names are cached: ``$MODZOO_HOME/type_names.json``."""
    return osp.join(modzoo_home(), 'type_names.json')


def cache_key() -> dict:
    """What the registered names depend on, read without importing any of it: the versions of
    the packages that register names and the count and newest mtime of modzoo's sources."""
    versions = {}
    for package in REGISTERING_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    root = osp.dirname(osp.abspath(__file__))
    sources = glob.glob(osp.join(root, '**', '*.py'), recursive=True)
    return dict(versions=versions, modzoo=root, sources=len(sources),
                newest_mtime_ns=max(os.stat(path).st_mtime_ns for path in sources))


def cached_names() -> Optional[set]:
    """The names the cache holds for today's :func:`cache_key`; ``None`` when it is missing,
    unreadable or stale."""
    try:
        with open(cache_file()) as f:
            cache = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(cache, dict) or cache.get('key') != cache_key():
        return None
    return set(cache.get('names', ()))


def cache_contents(names: Iterable[str]) -> bytes:
    """The cache file for ``names`` under today's key (JSON, UTF-8)."""
    return json.dumps(dict(key=cache_key(), names=sorted(names)), indent=1).encode()


def check_cached_types(cfg, filename: Optional[str] = None) -> None:
    """Fail at once, without torch, on a ``type`` the cached registries do not hold.

    Does nothing when the cache is missing or stale, or when the config has ``custom_imports``
    (they may register more names); the full :func:`~modzoo.engine.check_types` follows anyway.
    """
    if cfg.get('custom_imports'):
        return
    names = cached_names()
    if names is not None:
        raise_unknown_types(cfg, names, filename)


def load_checked_config(args, merge_args: Callable) -> Config:
    """A tool's config: ``args.config`` with ``merge_args(cfg, args)`` (its command line)
    applied, every ``type`` checked first against the cache, without torch (a typo fails at
    once), then in full by :func:`~modzoo.engine.check_types` (which imports torch). Its
    text is formatted once however often the run logs or dumps it
    (:func:`~modzoo.engine.config_text.format_config_text_once`)."""
    cfg = merge_args(Config.fromfile(args.config), args)
    check_cached_types(cfg, args.config)
    from modzoo.engine import check_types
    from modzoo.engine.config_text import format_config_text_once
    check_types(cfg, args.config)
    format_config_text_once()
    return cfg
