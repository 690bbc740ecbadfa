"""Point a config's data and metrics at some of its tasks (extraction, expansion, testing)."""
import copy
from typing import Optional, Sequence

from mmengine.config import Config


def keep_task_data(cfg: Config, tasks: Sequence[str], source: Optional[Config] = None,
                   source_name: str = 'the config',
                   splits: Sequence[str] = ('train', 'val', 'test')) -> None:
    """Set ``cfg``'s data of ``splits`` to the ``MultiTaskDataset`` sources of ``source``
    (default ``cfg``) that label one of ``tasks``, each labelling only those, and its
    evaluators (a list or one metric cfg) to the metrics of ``tasks``. In place. A loader or
    evaluator of ``source`` with nothing for ``tasks`` raises an error naming
    ``source_name``, the loader or evaluator and what it holds.
    """
    source = cfg if source is None else source
    for split in splits:
        evaluator = source.get(f'{split}_evaluator')
        if evaluator:
            metrics = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
            kept_metrics = [copy.deepcopy(m) for m in metrics if m.get('task', tasks[0]) in tasks]
            if not kept_metrics:
                raise ValueError(f'{source_name}: {split}_evaluator has no metric of task(s) '
                                 f"{list(tasks)}; its metrics: {[m.get('task') for m in metrics]}")
            cfg[f'{split}_evaluator'] = kept_metrics
        key = f'{split}_dataloader'
        loader = source.get(key)
        if not loader or loader.dataset.get('type') != 'MultiTaskDataset':
            continue
        kept = {name: dict(src, tasks=[t for t in src['tasks'] if t in tasks])
                for name, src in loader.dataset.sources.items()}
        kept = {name: src for name, src in kept.items() if src['tasks']}
        if not kept:
            labelled = sorted({t for src in loader.dataset.sources.values() for t in src['tasks']})
            raise ValueError(f'{source_name}: {key} has no source labelling task(s) '
                             f'{list(tasks)}; its sources label {labelled}')
        cfg[key] = copy.deepcopy(loader)
        cfg[key].dataset.sources = kept
        batch_sizes = (cfg[key].get('batch_sampler') or {}).get('batch_sizes')
        if batch_sizes:  # TaskBalancedSampler's per-source batch sizes
            cfg[key].batch_sampler.batch_sizes = {
                name: size for name, size in batch_sizes.items() if name in kept}
