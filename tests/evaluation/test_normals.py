import math

import numpy as np
import pytest
import torch

from modzoo.evaluation.metrics.normals import NormalMetric, histogram_median


def _normals(vectors):
    """[3, 1, W] from a list of W 3-vectors."""
    return torch.tensor(vectors, dtype=torch.float32).T.reshape(3, 1, -1)


def test_hand_computed(sample, evaluate):
    up = [0.0, 0.0, 1.0]
    s60, c60 = math.sin(math.radians(60)), math.cos(math.radians(60))
    s20, c20 = math.sin(math.radians(20)), math.cos(math.radians(20))
    s10, c10 = math.sin(math.radians(10)), math.cos(math.radians(10))
    samples = [
        # angles 0 (unnormalised pred), 90, 20, 60; the last gt is the zero vector: invalid
        sample(['normals'],
               gt_normal=_normals([up, up, up, up, [0, 0, 0]]),
               pred_normal=_normals([[0, 0, 2], [1, 0, 0], [0, s20, c20], [0, s60, c60],
                                     [1, 0, 0]])),
        sample(['normals'], gt_normal=_normals([[1, 0, 0]]),
               pred_normal=_normals([[c10, s10, 0]])),  # angle 10
        sample(['depth'], gt_depth=[[1.0]]),  # another task: ignored
    ]
    r = evaluate(NormalMetric(task='normals'), samples)
    # angles 0, 90, 20, 60, 10
    assert r['normals/mean_angle'] == pytest.approx(180 / 5)
    assert r['normals/rmse_angle'] == pytest.approx(math.sqrt((8100 + 400 + 3600 + 100) / 5))
    assert r['normals/median_angle'] == pytest.approx(20, abs=0.1)
    assert r['normals/within_11.25'] == pytest.approx(40)  # 0, 10
    assert r['normals/within_22.5'] == pytest.approx(60)   # 0, 10, 20
    assert r['normals/within_30'] == pytest.approx(60)


def test_against_arccos_reference_on_random_normals(sample, evaluate):
    gen = torch.Generator().manual_seed(0)
    gt = torch.nn.functional.normalize(torch.randn(3, 9, 11, generator=gen), dim=0)
    pred = gt + 0.4 * torch.randn(3, 9, 11, generator=gen)
    gt[:, :2] = 0  # two invalid rows
    r = evaluate(NormalMetric(task='normals'),
                 [sample(['normals'], gt_normal=gt, pred_normal=pred)])

    g = gt[:, 2:].reshape(3, -1).double().numpy()
    p = pred[:, 2:].reshape(3, -1).double().numpy()
    p /= np.linalg.norm(p, axis=0)
    angle = np.degrees(np.arccos(np.clip((p * g).sum(0), -1, 1)))
    assert r['normals/mean_angle'] == pytest.approx(angle.mean(), abs=1e-5)
    assert r['normals/median_angle'] == pytest.approx(np.median(angle), abs=0.1)
    assert r['normals/within_22.5'] == pytest.approx(100 * np.mean(angle < 22.5))


def test_histogram_median_interpolates_inside_the_bin():
    # 4 values in bin 2 ([2, 3)): the median (rank 2 of 4) lies halfway through it
    assert histogram_median(np.array([0, 0, 4, 0]), 1.0) == pytest.approx(2.5)
    # 1 value in bin 0, 1 in bin 3, 1 in bin 5: the middle value lies in bin 3
    assert histogram_median(np.array([1, 0, 0, 1, 0, 1]), 1.0) == pytest.approx(3.5)


def test_wrong_layout_is_a_clear_error(sample, evaluate):
    with pytest.raises(ValueError, match=r'must be \[3, H, W\]'):
        evaluate(NormalMetric(task='normals'),
                 [sample(['normals'], gt_normal=torch.ones(1, 2, 3),
                         pred_normal=torch.ones(1, 2, 3))])
