"""Point a config's data and metrics at one task (extraction and expansion outputs)."""
import copy
from typing import Optional

from mmengine.config import Config


def keep_task_data(cfg: Config, task: str, source: Optional[Config] = None,
                   source_name: str = 'the config') -> None:
    """Set ``cfg``'s train/val/test data to the ``MultiTaskDataset`` sources of ``source``
    (default ``cfg``) that label ``task``, each labelling ``task`` only, and its evaluators to
    those of ``task``. In place. A loader of ``source`` with no such source raises an error
    naming ``source_name``, the loader and the tasks its sources label.
    """
    source = cfg if source is None else source
    for split in ('train', 'val', 'test'):
        evaluator = source.get(f'{split}_evaluator')
        if isinstance(evaluator, (list, tuple)):
            cfg[f'{split}_evaluator'] = [copy.deepcopy(m) for m in evaluator
                                         if m.get('task', task) == task]
        key = f'{split}_dataloader'
        loader = source.get(key)
        if not loader or loader.dataset.get('type') != 'MultiTaskDataset':
            continue
        sources = {name: dict(src, tasks=[task]) for name, src in loader.dataset.sources.items()
                   if task in src['tasks']}
        if not sources:
            labelled = sorted({t for src in loader.dataset.sources.values() for t in src['tasks']})
            raise ValueError(f"{source_name}: {key} has no source labelling task '{task}'; "
                             f'its sources label {labelled}')
        cfg[key] = copy.deepcopy(loader)
        cfg[key].dataset.sources = sources
