"""The model zoo: build a model of ``configs/*/metafile.yml`` by name and predict with it.

>>> import modzoo
>>> modzoo.list_models('vit-tiny*')
['vit-tiny_synth_mtl', ...]
>>> model = modzoo.get_model('vit-tiny_synth_mtl', pretrained='work_dirs/.../iter_600.pth')
>>> sample = modzoo.inference(model, 'demo.png')      # TaskDataSample with pred_* fields

The index of names (:mod:`modzoo.model_index`) reads the metafiles without torch; weights load
through :func:`modzoo.weights.load_weights`.
"""
from typing import Optional, Sequence, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

from modzoo.model_index import CONFIGS_DIR, ModelInfo, find_model, list_models  # noqa: F401
from modzoo.registry import MODELS, TRANSFORMS
from modzoo.weights import CheckpointMismatchError, load_weights  # noqa: F401


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
            sha256-checked, else the newest checkpoint of ``work_dirs/NAME/``) or any source
            :func:`modzoo.hub.resolve` takes (a path, URL, ``hf://``, ``timm:`` or zoo name).
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
    if pretrained is True:  # published weights, else the newest local run (modzoo.hub)
        load_weights(model, f'modzoo://{name}', strict=strict)
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


def inference(model: torch.nn.Module, images, tasks: Optional[Sequence[str]] = None):
    """Predict ``tasks`` (default: all of the model's) on one image or a list of images.

    Args:
        model: a model of :func:`get_model` (its ``cfg`` gives the test pipeline: that of the
            first test source labelling the tasks, its annotation loading skipped). It is put
            in eval mode.
        images: a file path or an RGB uint8 array [H, W, 3], or a list of them.
        tasks: the task names to predict; tasks whose test pipelines differ (e.g. detection
            at its own resolution) are predicted in separate calls (:func:`pipeline_groups`).

    Returns:
        A ``TaskDataSample`` with the ``pred_*`` fields (a list for a list input).
    """
    cfg = getattr(model, 'cfg', None)
    if cfg is None:
        raise AttributeError('inference needs the model config as model.cfg: build the model '
                             'with modzoo.get_model, or set model.cfg = Config.fromfile(...)')
    model_tasks = tuple(task_heads(model))
    tasks = tuple(tasks or model_tasks)
    unknown = [task for task in tasks if task not in model_tasks]
    if unknown:
        raise KeyError(f'tasks {unknown} are not tasks of the model; it has {list(model_tasks)}')
    groups = pipeline_groups(cfg, tasks)
    if len(groups) > 1:
        raise ValueError(f'the tasks {[list(g) for g in groups]} have different test pipelines '
                         f'in {cfg.filename}: predict each group in its own inference call')
    single = not isinstance(images, (list, tuple))
    transforms = [TRANSFORMS.build(t) for t in _test_pipeline(cfg, tasks[0])]
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


def task_heads(model: torch.nn.Module) -> dict:
    """``{task: head}`` of a model: a ``MultiTaskModel``'s ``heads``; for a model with one
    ``head`` (MULTI-LANE), that head under the task of its test data."""
    if hasattr(model, 'heads'):
        return dict(model.heads)
    if hasattr(model, 'head') and getattr(model, 'cfg', None) is not None:
        return {task: model.head for task in _test_sources(model.cfg)[0]['tasks'] or ()}
    raise TypeError(f'{type(model).__name__} has neither one head per task (heads) nor one '
                    'head and a config (head, cfg): no task to predict')


def pipeline_groups(cfg: Config, tasks: Sequence[str]) -> list:
    """``tasks`` grouped by test pipeline (annotation loading aside), in order: one
    :func:`inference` call predicts one group."""
    groups = {}
    for task in tasks:
        steps = [t for t in _test_pipeline(cfg, task) if t['type'] != 'LoadTaskAnnotations']
        groups.setdefault(repr(steps), []).append(task)
    return [tuple(group) for group in groups.values()]


def _test_sources(cfg: Config) -> list:
    """The test sources of ``cfg`` as ``[{tasks: [...] or None, dataset: {...}}]``."""
    dataset = cfg.test_dataloader.dataset
    if 'sources' not in dataset:
        return [dict(tasks=None, dataset=dataset)]
    return [dict(tasks=source.get('tasks'), dataset=source['dataset'])
            for source in dataset.sources.values()]


def _test_pipeline(cfg: Config, task: Optional[str] = None) -> list:
    """The test pipeline of the first test source labelling ``task`` (else the first)."""
    sources = _test_sources(cfg)
    dataset = next((s['dataset'] for s in sources if task in (s['tasks'] or ())),
                   sources[0]['dataset'])
    if 'pipeline' not in dataset:
        raise KeyError(f'{cfg.filename}: test_dataloader.dataset has no pipeline (nor sources '
                       'with one)')
    return dataset.pipeline
