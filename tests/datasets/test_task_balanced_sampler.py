import numpy as np
import pytest
import torch
from mmengine.dataset import DefaultSampler

from modzoo.datasets.multi_task import MultiTaskDataset
from modzoo.datasets.task_balanced_sampler import TaskBalancedSampler, source_weights
from modzoo.structures import TaskDataSample


class ToyDataset(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return dict(inputs=torch.zeros(3, 2, 2), data_samples=TaskDataSample())


def make_dataset(sizes=(40, 100, 60)):
    return MultiTaskDataset({f's{i}': dict(tasks=[f't{i}'], dataset=ToyDataset(n))
                             for i, n in enumerate(sizes)})


def make_sampler(dataset, batch_size=4, rank=0, world_size=1, seed=7, **kw):
    sampler = DefaultSampler(dataset, shuffle=True, seed=seed)
    sampler.rank, sampler.world_size = rank, world_size
    return TaskBalancedSampler(sampler, batch_size, **kw)


def source_of(dataset, batch):
    sources = {dataset.locate(i)[0] for i in batch}
    assert len(sources) == 1, f'batch mixes sources {sources}'
    return sources.pop()


def test_dataset_tags_tasks_and_source():
    ds = make_dataset()
    assert len(ds) == 200 and ds.tasks == ('t0', 't1', 't2')
    item = ds[45]  # 40 in s0, so index 45 is s1[5]
    assert item['data_samples'].tasks == ('t1',)
    assert item['data_samples'].source == 's1'
    assert ds.locate(199) == (2, 59)


def test_source_weights():
    np.testing.assert_allclose(source_weights([1, 3], 'uniform'), [0.5, 0.5])
    np.testing.assert_allclose(source_weights([1, 3], 'size'), [0.25, 0.75])
    # T = 2: sqrt(1) : sqrt(4) = 1 : 2
    np.testing.assert_allclose(source_weights([1, 4], 'temperature', 2.0), [1 / 3, 2 / 3])
    with pytest.raises(ValueError, match='weighting'):
        source_weights([1], 'bogus')


@pytest.mark.parametrize('weighting', ['uniform', 'size', 'temperature'])
def test_one_source_per_batch_and_balance(weighting):
    ds = make_dataset()
    counts = np.zeros(3)
    for epoch in range(30):
        sampler = make_sampler(ds, weighting=weighting)
        sampler.sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 200 // 4
        for batch in batches:
            assert len(batch) == 4
            counts[source_of(ds, batch)] += 1
    expected = source_weights([40, 100, 60], weighting)
    np.testing.assert_allclose(counts / counts.sum(), expected, atol=0.03)


def test_ranks_share_task_sequence_with_disjoint_samples():
    ds = make_dataset()
    ranks = [list(make_sampler(ds, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 200 // 8
    for b0, b1 in zip(*ranks):
        assert source_of(ds, b0) == source_of(ds, b1)


def test_epochs_differ_and_are_reproducible():
    ds = make_dataset()
    sampler = make_sampler(ds)
    first = list(sampler)
    assert list(sampler) == first  # same epoch, same batches
    sampler.sampler.set_epoch(1)
    assert list(sampler) != first
    # a new sampler at the saved (seed, epoch) resumes the same sequence
    resumed = make_sampler(ds)
    resumed.sampler.set_epoch(1)
    assert list(resumed) == list(sampler)


def test_each_source_is_walked_without_repeats_before_reshuffle():
    ds = make_dataset((8, 8))
    sampler = make_sampler(ds, batch_size=2, weighting='uniform')
    seen = {0: [], 1: []}
    for batch in sampler:
        seen[source_of(ds, batch)].extend(batch)
    for s, idx in seen.items():
        first_pass = idx[:8]
        assert len(set(first_pass)) == len(first_pass)


def test_rejects_plain_dataset():
    with pytest.raises(TypeError, match='MultiTaskDataset'):
        TaskBalancedSampler(DefaultSampler(ToyDataset(10), seed=0), 2)


def test_all_sources_mode_puts_a_batch_of_every_source_in_each_step():
    ds = make_dataset()
    sampler = make_sampler(ds, batch_size=4, mode='all_sources')
    assert len(sampler) == 200 // (4 * 3)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    for batch in batches:
        assert [source_of(ds, batch[k:k + 4]) for k in (0, 4, 8)] == [0, 1, 2]
    # two ranks: the two halves of the single-process step at the same global batch
    ranks = [list(make_sampler(ds, batch_size=2, rank=r, world_size=2, mode='all_sources'))
             for r in range(2)]
    for b0, b1, whole in zip(*ranks, batches):
        assert [source_of(ds, b0[k:k + 2]) for k in (0, 2, 4)] == [0, 1, 2]
        assert sorted(b0 + b1) == sorted(whole)
    with pytest.raises(ValueError, match="mode must be 'one_source' or 'all_sources'"):
        make_sampler(ds, mode='every')


def test_batch_size_per_source_on_each_rank():
    ds = make_dataset()
    weights = source_weights([40, 100, 60], 'temperature', 2.0)
    batches = [list(make_sampler(ds, rank=r, world_size=2, weighting='temperature',
                                 batch_sizes=dict(s1=1, s2=8))) for r in (0, 1)]
    expected = float(np.dot(weights, [4, 1, 8]))
    assert len(batches[0]) == len(batches[1]) == int(200 // (expected * 2))
    for b0, b1 in zip(*batches):
        source = source_of(ds, b0)
        assert source == source_of(ds, b1)
        assert len(b0) == len(b1) == [4, 1, 8][source]
    with pytest.raises(KeyError, match=r"names sources \['det'\]"):
        make_sampler(ds, batch_sizes=dict(det=2))
