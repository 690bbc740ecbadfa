"""Heterogeneous multi-task data: several datasets, each labelling its own tasks."""
import bisect
import os.path as osp

from mmengine.dataset import BaseDataset
from torch.utils.data import ConcatDataset

from modzoo.datasets.synth.ensure import DEFAULT_SYNTH_ROOT, ensure_synth_data
from modzoo.registry import DATASETS


@DATASETS.register_module()
class MultiTaskDataset(ConcatDataset):
    """Concatenates datasets ("sources", a torch ``ConcatDataset``) and tags every sample with
    the tasks its source labels.

    Args:
        sources (dict): ``name -> dict(tasks=[task names], dataset=dataset cfg or object)``.
            A source labels one task (heterogeneous training: ImageNet for classification,
            ADE20K for segmentation, ...) or several (NYUD-v2 for semseg, depth, normals).
        data_root (str, optional): folder that relative ``data_root`` values of the sources
            are joined to, so one override moves all of them.
        synth_if_missing (bool | str | dict): render SynthScenes into a missing ``data_root``
            on first use (rank 0 renders, the other ranks wait), but only when ``data_root`` is
            ``data/synth`` (True), the folder given here (a str marks that folder as
            SynthScenes) or ``root`` of a dict, whose other keys are the generator's arguments
            (``dict(root='data/synth128', size=128)``). Any other missing ``data_root`` (a
            typo, real data not yet in place) raises ``FileNotFoundError`` naming each missing
            source folder.

    Each item is the source dataset's item with ``data_samples.tasks`` set. The
    :class:`TaskBalancedSampler` draws every batch from one source.
    """

    def __init__(self, sources: dict, data_root=None, synth_if_missing=False):
        if not sources:
            raise ValueError('MultiTaskDataset needs at least one entry in `sources`.')
        if synth_if_missing:
            if data_root is None:
                raise ValueError('synth_if_missing=True needs the SynthScenes `data_root`')
            options = dict(synth_if_missing) if isinstance(synth_if_missing, dict) else {}
            render_at = options.pop('root', DEFAULT_SYNTH_ROOT)
            if isinstance(synth_if_missing, str):
                render_at = synth_if_missing
            needed = [osp.join(data_root, source['dataset']['data_root'])
                      for source in sources.values() if isinstance(source, dict)
                      and isinstance(source.get('dataset'), dict)
                      and 'data_root' in source['dataset']]
            ensure_synth_data(data_root, render_at, needed, **options)
        self.source_names = list(sources)
        self.source_tasks, datasets = {}, []
        for name, source in sources.items():
            if not isinstance(source, dict) or 'tasks' not in source or 'dataset' not in source:
                raise ValueError(f"source '{name}' must be dict(tasks=[...], dataset=...), "
                                 f'got {source!r}')
            dataset = source['dataset']
            if isinstance(dataset, dict):
                dataset = dict(dataset)
                if data_root is not None and not osp.isabs(dataset.get('data_root', '/')):
                    dataset['data_root'] = osp.join(data_root, dataset['data_root'])
                dataset = DATASETS.build(dataset)
            if len(dataset) == 0:
                raise ValueError(f"source '{name}' ({type(dataset).__name__}) is empty")
            self.source_tasks[name] = tuple(source['tasks'])
            datasets.append(dataset)
        super().__init__(datasets)  # self.datasets, self.cumulative_sizes

    @property
    def tasks(self):
        """All task names, in source order, each once."""
        return tuple(dict.fromkeys(t for ts in self.source_tasks.values() for t in ts))

    @property
    def metainfo(self):
        return dict(tasks=self.tasks, sources={
            name: dict(tasks=self.source_tasks[name], **getattr(ds, 'metainfo', {}))
            for name, ds in zip(self.source_names, self.datasets)})

    def source_sizes(self):
        return [len(ds) for ds in self.datasets]

    def source_range(self, source_idx):
        """Global indices ``range(start, stop)`` of one source."""
        start = self.cumulative_sizes[source_idx - 1] if source_idx > 0 else 0
        return range(start, self.cumulative_sizes[source_idx])

    def locate(self, idx):
        """Global index -> (source index, index inside that source)."""
        if idx < 0:
            if -idx > len(self):
                raise IndexError(f'index {idx} is out of range for {len(self)} samples')
            idx += len(self)
        source_idx = bisect.bisect_right(self.cumulative_sizes, idx)
        return source_idx, idx - (self.cumulative_sizes[source_idx - 1] if source_idx else 0)

    def __getitem__(self, idx):
        source_idx, local_idx = self.locate(idx)
        item = self.datasets[source_idx][local_idx]
        name = self.source_names[source_idx]
        item['data_samples'].set_metainfo(dict(tasks=self.source_tasks[name], source=name))
        return item

    def full_init(self):
        for ds in self.datasets:
            if isinstance(ds, BaseDataset):
                ds.full_init()
