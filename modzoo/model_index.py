"""The zoo index: every model of ``configs/*/metafile.yml``, read with PyYAML alone (no torch,
no timm), so ``modzoo.list_models()`` answers at once.

A metafile follows mmpretrain's layout; the keys marked * are modzoo's additions::

    Collections:
      - Name: Quickstart
        README: configs/quickstart/README.md
    Models:
      - Name: vit-tiny_synth_mtl                 # unique in the zoo
        In Collection: Quickstart
        Config: configs/quickstart/vit-tiny_synth_mtl.py   # relative to the repository root
        Metadata:
          Tasks: [cls, semseg, depth, multilabel]          # * default: the config's heads
          Training Data: [SynthScenes]
          Parameters: 5690000                              # total
          Active Parameters: 3000000                       # * per image (MoE); default: total
          FLOPs: 1100000000                                # per image at Resolution
          Resolution: 64                                   # * int or [H, W]
          Schedule: 600 iters, batch 32                    # *
          Init: timm:vit_tiny_patch16_224.augreg_in21k_ft_in1k   # * backbone initialisation
          Experts: 16                                      # * MoE experts per layer
          Top-K: 4                                         # * experts per token
        Results:
          - Task: cls
            Dataset: SynthScenes val
            Metrics: {top1: 41.5}
            Command: python tools/test.py CONFIG CKPT --out m.json   # * how it was measured
        Weights: https://... | hf://ORG/REPO/FILE | null    # the whole model's state dict
        Sha256: '0a1b2c3d...'                              # * of that file, quoted
        Reproduce: python tools/train.py CONFIG            # * the command that makes them
        Converted From: {Weights: URL, Code: URL}
"""
import difflib
import fnmatch
import glob
import os.path as osp
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import List, Optional

import yaml

# The configs folder of a source checkout (``pip install -e .``); metafile paths are relative to
# its parent.
CONFIGS_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs')
FETCHABLE = ('https://', 'http://', 'hf://', 'timm:')


@dataclass
class ModelInfo:
    """One ``Models`` entry of a metafile (see the module docstring)."""
    name: str
    config: str                 # as written: relative to the repository root
    metafile: str               # absolute path of the metafile
    collection: Optional[str] = None
    metadata: dict = field(default_factory=dict)
    results: List[dict] = field(default_factory=list)
    weights: Optional[str] = None
    sha256: Optional[str] = None
    reproduce: Optional[str] = None
    converted_from: Optional[dict] = None

    @property
    def config_path(self) -> str:
        return osp.join(osp.dirname(CONFIGS_DIR), self.config)

    @cached_property
    def tasks(self) -> List[str]:
        """``Metadata.Tasks``, else the task names of the config's ``model.heads``, else the
        ``Task`` of each result."""
        tasks = self.metadata.get('Tasks')
        if tasks is None:
            from mmengine.config import Config  # only here: the index itself needs no mmengine
            heads = Config.fromfile(self.config_path).model.get('heads')
            tasks = list(heads) if isinstance(heads, dict) else [
                r['Task'] for r in self.results if 'Task' in r]
        return list(dict.fromkeys(tasks))

    @property
    def train_command(self) -> str:
        """``Reproduce``, else the plain training command of the config."""
        return self.reproduce or f'python tools/train.py {self.config}'


def load_metafiles() -> List[ModelInfo]:
    """Every model of ``CONFIGS_DIR/*/metafile.yml``, checked: each has a unique ``Name``, a
    ``Config`` that exists and ``Weights`` that can be fetched (``https://``, ``hf://``,
    ``timm:``) or none. Errors name the metafile and the entry."""
    if not osp.isdir(CONFIGS_DIR):
        raise FileNotFoundError(f'the configs folder {CONFIGS_DIR} is missing: the model zoo '
                                'needs a source checkout of modzoo (pip install -e .)')
    models, seen = [], {}
    for metafile in sorted(glob.glob(osp.join(CONFIGS_DIR, '*', 'metafile.yml'))):
        for info in _read_metafile(metafile):
            if info.name in seen:
                raise ValueError(f"model name '{info.name}' is in both {seen[info.name]} and "
                                 f'{metafile}')
            seen[info.name] = metafile
            models.append(info)
    return models


def _read_metafile(metafile: str) -> List[ModelInfo]:
    with open(metafile) as f:
        try:
            content = yaml.safe_load(f) or {}
        except yaml.YAMLError as error:
            raise ValueError(f'{metafile} is not valid YAML: {error}') from error
    entries = content.get('Models') if isinstance(content, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f'{metafile} must have a `Models:` list')
    infos = []
    for i, entry in enumerate(entries):
        where = f"{metafile}, Models[{i}] ('{entry.get('Name', '?')}')" \
            if isinstance(entry, dict) else f'{metafile}, Models[{i}]'
        if not isinstance(entry, dict) or not entry.get('Name') or not entry.get('Config'):
            raise ValueError(f'{where}: every model needs a Name and a Config')
        info = ModelInfo(
            name=str(entry['Name']), config=entry['Config'], metafile=metafile,
            collection=entry.get('In Collection'), metadata=entry.get('Metadata') or {},
            results=entry.get('Results') or [], weights=entry.get('Weights'),
            sha256=entry.get('Sha256'), reproduce=entry.get('Reproduce'),
            converted_from=entry.get('Converted From'))
        if not osp.isfile(info.config_path):
            raise ValueError(f'{where}: Config {info.config} does not exist')
        if info.sha256 is not None and not (isinstance(info.sha256, str)
                                            and re.fullmatch(r'[0-9a-f]{8,64}', info.sha256)):
            raise ValueError(f'{where}: Sha256 {info.sha256!r} must be 8 to 64 lower-case hex '
                             "digits, quoted ('...') so that YAML reads a string")
        if info.weights and not str(info.weights).startswith(FETCHABLE):
            raise ValueError(f'{where}: Weights {info.weights} must be a URL that can be fetched '
                             f'({", ".join(FETCHABLE)}) or null (say how to make them under '
                             'Reproduce)')
        infos.append(info)
    return infos


def list_models(pattern: str = '*', task: Optional[str] = None) -> List[str]:
    """Sorted zoo names matching the shell-style ``pattern``, optionally only models that
    predict ``task``."""
    return sorted(info.name for info in load_metafiles()
                  if fnmatch.fnmatchcase(info.name, pattern)
                  and (task is None or task in info.tasks))


def find_model(name: str) -> ModelInfo:
    """The metafile entry of ``name``; an unknown name raises KeyError listing the closest."""
    models = {info.name: info for info in load_metafiles()}
    if name in models:
        return models[name]
    close = difflib.get_close_matches(name, list(models), n=5, cutoff=0.4)
    raise KeyError(f"'{name}' is not a model of the zoo; "
                   + (f'closest: {", ".join(close)}' if close
                      else f'the zoo has: {", ".join(sorted(models))}'))
