import pytest
import torch
from mmengine.evaluator import Evaluator

from modzoo.structures import TaskDataSample


def _sample(tasks, **fields):
    """A TaskDataSample labelled for ``tasks``; list/number fields become tensors, and
    ``img_shape``/``pad_shape`` go to the metainfo."""
    meta = dict(tasks=tuple(tasks), img_path=f'img_{"_".join(tasks)}.png')
    meta.update({k: fields.pop(k) for k in ('img_shape', 'pad_shape') if k in fields})
    sample = TaskDataSample(metainfo=meta)
    for key, value in fields.items():
        setattr(sample, key, value if isinstance(value, torch.Tensor) else torch.tensor(value))
    return sample


def _evaluate(metric, samples, size=None):
    """Run ``metric`` the way the val loop does: Evaluator.process per batch of 2 samples
    (as dicts), then evaluate(dataset size)."""
    evaluator = Evaluator(metric)
    for i in range(0, len(samples), 2):
        evaluator.process(samples[i:i + 2])
    return evaluator.evaluate(len(samples) if size is None else size)


@pytest.fixture
def sample():
    return _sample


@pytest.fixture
def evaluate():
    return _evaluate
