"""The model zoo: every model of ``configs/*/metafile.yml``, by name.

>>> import modzoo
>>> modzoo.list_models('vit-tiny*')
['vit-tiny_synth_mtl', ...]
>>> model = modzoo.get_model('vit-tiny_synth_mtl', pretrained='work_dirs/.../iter_600.pth')
>>> sample = modzoo.inference(model, 'demo.png')      # TaskDataSample with pred_* fields

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
import logging
import os.path as osp
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
import yaml
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.logging import print_log

from modzoo.engine.checkpoint import load_from_local
from modzoo.hub import resolve
from modzoo.registry import MODELS, TRANSFORMS

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


def get_model(name: str,
              pretrained: Union[bool, str] = False,
              strict: bool = True,
              device: Union[str, torch.device] = 'cpu',
              **overrides) -> torch.nn.Module:
    """Build zoo model ``name`` from its config, in eval mode, with the config as ``model.cfg``.

    Args:
        name: a name of :func:`list_models`.
        pretrained: False (weights as constructed; ``model.init_weights()`` applies the config's
            init, which may download its backbone checkpoint), True (the metafile's Weights,
            sha256-checked) or any source :func:`modzoo.hub.resolve` takes (a path, URL,
            ``hf://``, ``timm:`` or zoo name).
        strict: with False, a checkpoint whose keys do not all fit loads what fits.
        device: where the model goes.
        **overrides: merged into the config's ``model`` dict, e.g.
            ``heads=dict(cls=dict(num_classes=5))``.
    """
    info = find_model(name)
    cfg = Config.fromfile(info.config_path)
    if overrides:
        cfg.merge_from_dict(dict(model=overrides))
    model = MODELS.build(cfg.model)
    if pretrained is True:
        if not info.weights:
            raise FileNotFoundError(f"zoo model '{name}' has no published weights; make them with "
                                    f'`{info.train_command}` and pass the checkpoint as '
                                    'pretrained=PATH')
        load_weights(model, info.weights, strict=strict, sha256=info.sha256)
    elif pretrained:
        load_weights(model, pretrained, strict=strict)
    model.cfg = cfg
    return model.to(device).eval()


def init_model(config: Union[str, Config], checkpoint: Optional[str] = None,
               device: Union[str, torch.device] = 'cpu', strict: bool = True) -> torch.nn.Module:
    """Build the model of ``config`` (a path or a ``Config``), load ``checkpoint`` (any source
    of :func:`load_weights`) and return it in eval mode on ``device`` with ``model.cfg`` set,
    ready for :func:`inference`."""
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    model = MODELS.build(cfg.model)
    if checkpoint:
        load_weights(model, checkpoint, strict=strict)
    model.cfg = cfg
    return model.to(device).eval()


class CheckpointMismatchError(RuntimeError):
    """The keys or shapes of a checkpoint do not fit the model."""


def load_weights(model: torch.nn.Module, checkpoint: str, strict: bool = True,
                 sha256: Optional[str] = None) -> None:
    """Load ``checkpoint`` (any source of :func:`modzoo.hub.resolve`; a whole mmengine
    checkpoint or a bare state dict; ``module.`` prefixes dropped) into ``model``.

    Keys of the model missing from the checkpoint, keys the model does not have and shape
    mismatches are listed grouped by module: with ``strict`` they raise
    :class:`CheckpointMismatchError`, otherwise they are logged and everything that fits loads.
    """
    path = resolve(checkpoint, sha256)
    state = load_from_local(path, map_location='cpu')
    if isinstance(state, dict) and isinstance(state.get('state_dict'), dict):
        state = state['state_dict']
    state = {re.sub(r'^module\.', '', key): value for key, value in state.items()}
    own = model.state_dict()
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    mismatched = [f'{key} {tuple(state[key].shape)} vs model {tuple(own[key].shape)}'
                  for key in own if key in state and state[key].shape != own[key].shape]
    report = _key_report(missing, unexpected, mismatched)
    if report:
        message = f'checkpoint {checkpoint} does not fit {type(model).__name__}:\n{report}'
        if strict:
            raise CheckpointMismatchError(message + '\nPass strict=False to load what fits.')
        print_log(message, logger='current', level=logging.WARNING)
    model.load_state_dict({key: value for key, value in state.items()
                           if key in own and value.shape == own[key].shape}, strict=False)


def _key_report(missing: Sequence[str], unexpected: Sequence[str],
                mismatched: Sequence[str]) -> str:
    sections = [('missing keys (in the model, not in the checkpoint)', missing),
                ('unexpected keys (in the checkpoint, not in the model)', unexpected),
                ('shape mismatches', mismatched)]
    return '\n'.join(f'{title}:\n' + _group_by_module(keys) for title, keys in sections if keys)


def _group_by_module(keys: Sequence[str], shown: int = 6) -> str:
    """One line per module (first two name components); block indices become ``#``:
    ``  backbone.blocks: #.attn.qkv.bias (x12), #.attn.qkv.weight (x12), ...``."""
    groups = defaultdict(lambda: defaultdict(int))
    for key in keys:
        parts = key.split('.')
        split = 2 if len(parts) > 2 else 1
        module, rest = '.'.join(parts[:split]), parts[split:]
        pattern = '.'.join('#' if part.isdigit() else part for part in rest) or '(itself)'
        groups[module][pattern] += 1
    lines = []
    for module, patterns in groups.items():
        items = [p if n == 1 else f'{p} (x{n})' for p, n in patterns.items()]
        more = f', ... (+{len(items) - shown} more)' if len(items) > shown else ''
        lines.append(f'  {module}: {", ".join(items[:shown])}{more}')
    return '\n'.join(lines)


def inference(model: torch.nn.Module, images, tasks: Optional[Sequence[str]] = None):
    """Predict ``tasks`` (default: all of the model's) on one image or a list of images.

    Args:
        model: a model of :func:`get_model` (its ``cfg`` gives the test pipeline: that of the
            first source of ``test_dataloader``). It is put in eval mode.
        images: a file path or an RGB uint8 array [H, W, 3], or a list of them.
        tasks: the task names to predict.

    Returns:
        A ``TaskDataSample`` with the ``pred_*`` fields (a list for a list input).
    """
    cfg = getattr(model, 'cfg', None)
    if cfg is None:
        raise AttributeError('inference needs the model config as model.cfg: build the model '
                             'with modzoo.get_model, or set model.cfg = Config.fromfile(...)')
    tasks = tuple(tasks or model.tasks)
    unknown = [task for task in tasks if task not in model.tasks]
    if unknown:
        raise KeyError(f'tasks {unknown} are not tasks of the model; it has {list(model.tasks)}')
    single = not isinstance(images, (list, tuple))
    transforms = [TRANSFORMS.build(t) for t in _test_pipeline(cfg)]
    batch = []
    for image in [images] if single else images:
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f'an image array must be RGB uint8 [H, W, 3], got {image.dtype} '
                                 f'{list(image.shape)}')
            results = dict(img=image, img_shape=image.shape[:2], ori_shape=image.shape[:2])
            steps = [t for t in transforms if type(t).__name__ != 'LoadImage']
        else:
            results, steps = dict(img_path=str(image)), transforms
        results['tasks'] = tasks
        for transform in steps:
            results = transform(results)
        batch.append(results)
    model.eval()
    with torch.no_grad():
        samples = model.test_step(pseudo_collate(batch))
    return samples[0] if single else samples


def _test_pipeline(cfg: Config) -> list:
    dataset = cfg.test_dataloader.dataset
    if 'sources' in dataset:
        dataset = next(iter(dataset.sources.values()))['dataset']
    if 'pipeline' not in dataset:
        raise KeyError(f'{cfg.filename}: test_dataloader.dataset has no pipeline (nor sources '
                       'with one)')
    return dataset.pipeline
