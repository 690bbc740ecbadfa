import math

import numpy as np
import pytest
import torch
from skimage.morphology import thin

from modzoo.evaluation.metrics.boundary import BoundaryMetric, match_edges


def _line_pair(size=20, shift=1):
    """gt: a vertical edge at column 10; pred: the same edge ``shift`` columns over."""
    gt = torch.zeros(size, size, dtype=torch.long)
    gt[:, 10] = 1
    pred = torch.zeros(size, size)
    pred[:, 10 + shift] = 0.9
    return gt, pred


def test_shifted_edge_matches_within_tolerance_only(sample, evaluate):
    gt, pred = _line_pair()
    diag = math.hypot(20, 20)
    samples = [sample(['edge'], gt_edge=gt, pred_edge=pred)]
    # tolerance 1.5 px: every pixel of both edges has a partner 1 px away
    assert evaluate(BoundaryMetric(task='edge', max_dist=1.5 / diag), samples)['edge/odsF'] \
        == pytest.approx(100)
    # tolerance 0.5 px, and PASCAL's 0.0075 x 28.3 = 0.2 px: nothing matches
    assert evaluate(BoundaryMetric(task='edge', max_dist=0.5 / diag), samples)['edge/odsF'] == 0
    assert evaluate(BoundaryMetric(task='edge'), samples)['edge/odsF'] == 0


def test_hand_computed_with_ignored_pixels(sample, evaluate):
    gt = torch.zeros(5, 5, dtype=torch.long)
    gt[0, 0] = gt[1, 1] = gt[2, 2] = 1
    gt[4] = 255  # an ignored (padding) row
    pred = torch.zeros(5, 5)
    pred[0, 0], pred[1, 1], pred[0, 4] = 0.9, 0.5, 0.7
    pred[4, 0] = 0.95  # on the ignored row: never counted
    samples = [sample(['edge'], gt_edge=gt, pred_edge=pred),
               sample(['depth'], gt_depth=[[1.0]])]  # another task: ignored
    r = evaluate(BoundaryMetric(task='edge', max_dist=0, thresholds=(0.3, 0.6)), samples)
    # t = 0.3: predicted (0,0) (1,1) (0,4): 2 of 3 match; gt matched 2 of 3 -> F = 2/3
    # t = 0.6: predicted (0,0) (0,4): 1 of 2 match; gt matched 1 of 3 -> F = 2(1/6)/(5/6) = 0.4
    assert r['edge/odsF'] == pytest.approx(100 * 2 / 3)


def test_counts_are_pooled_over_the_set(sample, evaluate):
    # image 1 alone: F = 1 at t = 0.6; image 2 alone: F = 0. Pooled at t = 0.6:
    # predicted 1 + 1, matched 1 + 0; gt 1 + 1, matched 1 + 0 -> P = R = F = 1/2
    one = torch.tensor([[1, 0]])
    samples = [sample(['edge'], gt_edge=one, pred_edge=[[0.8, 0.0]]),
               sample(['edge'], gt_edge=one, pred_edge=[[0.0, 0.8]])]
    r = evaluate(BoundaryMetric(task='edge', max_dist=0, thresholds=(0.6, )), samples)
    assert r['edge/odsF'] == pytest.approx(50)


def test_tolerance_uses_the_unpadded_diagonal(sample, evaluate):
    gt, pred = _line_pair()
    metric = BoundaryMetric(task='edge', max_dist=1.2 / math.hypot(20, 20))
    # maps at pad_shape: the tolerance is from img_shape's diagonal, 0.6 px: no match
    padded = sample(['edge'], gt_edge=gt, pred_edge=pred, img_shape=(10, 10),
                    pad_shape=(20, 20))
    assert evaluate(metric, [padded])['edge/odsF'] == 0
    # the maps cover the whole image: 1.2 px, the shifted edge matches
    assert evaluate(metric, [sample(['edge'], gt_edge=gt, pred_edge=pred)])['edge/odsF'] \
        == pytest.approx(100)


def test_bad_arguments_and_labels(sample, evaluate):
    with pytest.raises(ValueError, match='`thresholds` must be increasing'):
        BoundaryMetric(task='edge', thresholds=(0.5, 0.2))
    with pytest.raises(ValueError, match='must hold 0, 1 or 255'):
        evaluate(BoundaryMetric(task='edge'),
                 [sample(['edge'], gt_edge=[[2, 0]], pred_edge=[[0.1, 0.2]])])


def test_thick_band_scores_as_its_thinned_line(sample, evaluate):
    # a 5-pixel band around a one-pixel gt line (2 px longer at each end, which thinning
    # takes back): thinned to the gt line, it matches it one to one
    gt = torch.zeros(40, 40, dtype=torch.long)
    gt[5:35, 20] = 1
    band = torch.zeros(40, 40)
    band[3:37, 18:23] = 0.9
    metric = BoundaryMetric(task='edge', max_dist=2.5 / math.hypot(40, 40))
    thick = evaluate(metric, [sample(['edge'], gt_edge=gt, pred_edge=band)])['edge/odsF']
    thinned = torch.from_numpy(thin(band.numpy() >= 0.5)).float() * 0.9
    assert thinned.sum() < band.sum() / 4   # thinning left about one line
    line = evaluate(metric, [sample(['edge'], gt_edge=gt, pred_edge=thinned)])['edge/odsF']
    assert thick == pytest.approx(line) == pytest.approx(100)


def test_parallel_duplicates_are_not_double_credited(sample, evaluate):
    # gt at column 10, predicted edges at columns 9 and 11 (both 1 px away, not touching, so
    # thinning keeps both): each gt pixel credits one of them: P = 1/2, R = 1, F = 2/3
    gt = torch.zeros(20, 20, dtype=torch.long)
    gt[:, 10] = 1
    pred = torch.zeros(20, 20)
    pred[:, 9] = pred[:, 11] = 0.9
    metric = BoundaryMetric(task='edge', max_dist=1.5 / math.hypot(20, 20))
    r = evaluate(metric, [sample(['edge'], gt_edge=gt, pred_edge=pred)])
    assert r['edge/odsF'] == pytest.approx(100 * 2 / 3)


def test_one_to_one_matching_by_hand():
    # gt pixels a=(0,0), b=(0,2); predictions p=(0,1) (near both) and q=(0,3) (near b only):
    # a greedy p-b pairing would leave a alone; the maximum matching pairs p-a and q-b
    pred, gt = np.array([[0, 1], [0, 3]]), np.array([[0, 0], [0, 2]])
    assert match_edges(pred, gt, radius=1.0) == 2
    assert match_edges(pred[:1], gt, radius=1.0) == 1      # one prediction, one credit
    assert match_edges(pred, gt, radius=0.5) == 0
    assert match_edges(pred, gt[:0], radius=1.0) == 0
