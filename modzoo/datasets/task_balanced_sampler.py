"""Batches of one source at a time, balanced across sources, identical task order on all ranks."""
import numpy as np
from torch.utils.data import Sampler

from modzoo.registry import DATA_SAMPLERS


def source_weights(sizes, weighting='uniform', temperature=2.0):
    """Probability of drawing each source for a batch.

    uniform: equal; size: proportional to the source's size; temperature: ``size**(1/T)``
    (T=1 is 'size', T→∞ is 'uniform').
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    if weighting == 'uniform':
        w = np.ones_like(sizes)
    elif weighting == 'size':
        w = sizes
    elif weighting == 'temperature':
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        w = sizes ** (1.0 / temperature)
    else:
        raise ValueError(f"weighting must be 'uniform', 'size' or 'temperature', got "
                         f'{weighting!r}')
    return w / w.sum()


@DATA_SAMPLERS.register_module()
class TaskBalancedSampler(Sampler):
    """Batch sampler for :class:`MultiTaskDataset`: every batch comes from ONE source, or
    holds one batch of EVERY source.

    Used as ``batch_sampler=dict(type='TaskBalancedSampler', weighting='uniform')`` beside a
    ``sampler=dict(type='DefaultSampler')``; mmengine hands over that sampler and the
    batch size. The sampler provides the dataset, seed, rank, world size and epoch; its own
    order is not used.

    Per epoch (``len(dataset) // (batch_size * world_size)`` steps) the source of every step
    is drawn from ``source_weights`` with a generator seeded by ``(seed, epoch)`` — the same
    sequence on every rank. Each source walks through its own permutation (reshuffled when
    used up) and each step takes ``batch_size * world_size`` consecutive indices of it, rank r
    keeping the r-th slice, so ranks see disjoint samples of the same task. Everything is a
    function of ``(seed, epoch)``: a resumed run that advances the loader by the trained
    steps continues exactly where it stopped.

    ``batch_sizes`` (``{source name: batch size per rank}``) gives some sources their own
    batch size (classification and detection batches differ by an order of magnitude);
    the others use ``batch_size``, and an epoch has ``len(dataset) // (samples per step *
    world_size)`` steps (the expected samples per step in 'one_source' mode).
    """

    def __init__(self, sampler, batch_size, weighting='uniform', temperature=2.0,
                 drop_last=True, mode='one_source', batch_sizes=None):
        if mode not in ('one_source', 'all_sources'):
            raise ValueError(f"TaskBalancedSampler mode must be 'one_source' or 'all_sources', "
                             f'got {mode!r}')
        self.mode = mode
        dataset = sampler.dataset
        if not hasattr(dataset, 'source_range'):
            raise TypeError('TaskBalancedSampler needs a MultiTaskDataset, got '
                            f'{type(dataset).__name__}')
        self.sampler = sampler
        self.dataset = dataset
        self.batch_size = batch_size
        self.rank = getattr(sampler, 'rank', 0)
        self.world_size = getattr(sampler, 'world_size', 1)
        self.shuffle = getattr(sampler, 'shuffle', True)
        self.weights = source_weights(dataset.source_sizes(), weighting, temperature)
        batch_sizes = dict(batch_sizes or {})
        unknown = sorted(set(batch_sizes) - set(dataset.source_names))
        if unknown:
            raise KeyError(f'TaskBalancedSampler batch_sizes names sources {unknown}; the '
                           f'dataset has {dataset.source_names}')
        self.batch_sizes = [int(batch_sizes.get(name, batch_size))
                            for name in dataset.source_names]
        per_step = sum(self.batch_sizes) if mode == 'all_sources' else \
            float(np.dot(self.weights, self.batch_sizes))
        self.num_steps = int(len(dataset) // (per_step * self.world_size))
        if self.num_steps == 0:
            raise ValueError(f'dataset of {len(dataset)} samples is smaller than one step of '
                             f'batch_size {batch_size} x world_size {self.world_size}'
                             + (f' x {len(self.weights)} sources' if mode == 'all_sources'
                                else ''))

    def _seed(self):
        return int(getattr(self.sampler, 'seed', 0) or 0)

    def source_sequence(self, epoch):
        """Source index of each step of ``epoch`` ([num_steps] int array)."""
        rng = np.random.default_rng([self._seed(), epoch])
        return rng.choice(len(self.weights), size=self.num_steps, p=self.weights)

    def __iter__(self):
        epoch = int(getattr(self.sampler, 'epoch', 0))
        streams = [self._stream(s, epoch) for s in range(len(self.weights))]

        def take(source):  # this rank's slice of the source's next step
            size = self.batch_sizes[source]
            chunk = [next(streams[source]) for _ in range(size * self.world_size)]
            return chunk[self.rank * size:(self.rank + 1) * size]

        if self.mode == 'all_sources':
            for _ in range(self.num_steps):
                yield [i for source in range(len(streams)) for i in take(source)]
            return
        for source in self.source_sequence(epoch):
            yield take(source)

    def _stream(self, source, epoch):
        indices = np.asarray(self.dataset.source_range(source))
        rng = np.random.default_rng([self._seed(), epoch, source + 1])
        while True:
            order = rng.permutation(indices) if self.shuffle else indices
            yield from order.tolist()

    def __len__(self):
        return self.num_steps
