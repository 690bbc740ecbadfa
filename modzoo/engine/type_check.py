"""Check every ``type=`` of a config against the registries before anything is built.

A typo deep in a config (``model.heads.depth.type='DepthHaed'``) would otherwise surface only
when the Runner builds that part, after the environment dump and the dataset set-up. Here it
fails at once, naming the key path and the closest registered names.
"""
import difflib
from typing import Iterator, Tuple

from modzoo import registry


class UnknownTypeError(KeyError):
    """A config names a ``type`` that no registry has (the message lists each key path)."""

    def __str__(self) -> str:  # KeyError would print the repr, newlines escaped
        return str(self.args[0])


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


def check_types(cfg, filename: str = None) -> None:
    """Raise :class:`UnknownTypeError` (a ``KeyError``) naming each ``type`` of ``cfg`` that no
    registry has, with its key path and the closest names."""
    names = registered_names()
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
