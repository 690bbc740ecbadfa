"""Build-time check that a config's heads and datasets name the same tasks."""


def _dataset_tasks(dataset_cfg):
    """Task names of a MultiTaskDataset cfg, ``{source: tasks}``; None for other datasets."""
    if not isinstance(dataset_cfg, dict) or dataset_cfg.get('type') != 'MultiTaskDataset':
        return None
    return {name: tuple(src.get('tasks', ())) for name, src in dataset_cfg['sources'].items()}


def check_tasks(cfg):
    """Raise ``ValueError`` when a dataset labels a task that has no head, a head's task has
    no training data, or a task-routed backbone (``backbone.tasks``, a list of names) has no
    router for a head's task. Names the lists. Configs whose model has no ``heads`` pass; the
    backbone's ``frozen_tasks`` (an expanded MoE model's old tasks) need no training data."""
    model = cfg.get('model', {})
    heads = model.get('heads')
    if not heads:
        return
    heads = list(heads)
    backbone = model.get('backbone') or {}
    frozen = backbone.get('frozen_tasks') or ()
    routed = backbone.get('tasks')
    if isinstance(routed, (list, tuple)):
        unrouted = [t for t in heads if t not in routed]
        if unrouted:
            raise ValueError(f'model.heads has task(s) {unrouted} that model.backbone.tasks '
                             f'{list(routed)} has no router for; heads: {heads}')
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader')
        sources = _dataset_tasks(loader.get('dataset')) if loader else None
        if sources is None:
            continue
        for source, tasks in sources.items():
            orphans = [t for t in tasks if t not in heads]
            if orphans:
                raise ValueError(f"{split}_dataloader source '{source}' labels task(s) "
                                 f'{orphans} but model.heads has no head for them; '
                                 f'heads: {heads}; dataset tasks: {dict(sources)}')
        if split == 'train':
            labelled = {t for tasks in sources.values() for t in tasks}
            unfed = [t for t in heads if t not in labelled and t not in frozen]
            if unfed:
                raise ValueError(f'model.heads has task(s) {unfed} that no train_dataloader '
                                 f'source labels; heads: {heads}; dataset tasks: '
                                 f'{dict(sources)}')
