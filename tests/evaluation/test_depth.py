import math

import pytest

from modzoo.evaluation.metrics.depth import DepthMetric


def _samples(sample):
    return [
        # the gt-0 pixel (pred 9) is not valid
        sample(['depth'], gt_depth=[[1.0, 2.0], [0.0, 4.0]], pred_depth=[[2.0, 2.0], [9.0, 2.0]]),
        sample(['depth'], gt_depth=[[2.0, 0.0]], pred_depth=[[1.0, 5.0]]),
        sample(['cls'], gt_label=0),  # another task: ignored
    ]


def test_hand_computed(sample, evaluate):
    # valid (gt, pred): (1,2) (2,2) (4,2) (2,1), N = 4
    r = evaluate(DepthMetric(task='depth'), _samples(sample))
    assert r['depth/rmse'] == pytest.approx(math.sqrt((1 + 0 + 4 + 1) / 4))
    # log differences: -ln2, 0, ln2, ln2
    assert r['depth/log_rmse'] == pytest.approx(math.log(2) * math.sqrt(3 / 4))
    assert r['depth/abs_rel'] == pytest.approx((1 / 1 + 0 + 2 / 4 + 1 / 2) / 4)
    assert r['depth/sq_rel'] == pytest.approx((1 / 1 + 0 + 4 / 4 + 1 / 2) / 4)


def test_max_depth_excludes_far_pixels(sample, evaluate):
    # gt 4 >= 3 drops out: (1,2) (2,2) (2,1)
    r = evaluate(DepthMetric(task='depth', max_depth=3), _samples(sample))
    assert r['depth/rmse'] == pytest.approx(math.sqrt(2 / 3))


def test_non_positive_prediction_is_clamped(sample, evaluate):
    r = evaluate(DepthMetric(task='depth'),
                 [sample(['depth'], gt_depth=[[1.0]], pred_depth=[[-1.0]])])
    assert r['depth/rmse'] == pytest.approx(1.0)  # pred 1e-9
    assert r['depth/log_rmse'] == pytest.approx(-math.log(1e-9))


def test_no_valid_pixel_is_a_clear_error(sample, evaluate):
    with pytest.raises(ValueError, match='no valid gt_depth pixel'):
        evaluate(DepthMetric(task='depth'),
                 [sample(['depth'], gt_depth=[[0.0]], pred_depth=[[1.0]])])
