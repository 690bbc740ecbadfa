"""Behaviour shared by every metric: task filtering, prefixes, registry, padding."""
import pytest

from modzoo.evaluation.metrics.depth import DepthMetric
from modzoo.registry import METRICS


def test_registered_under_modzoo_scope():
    metric = METRICS.build(dict(type='DepthMetric', task='nyud_depth'))
    assert isinstance(metric, DepthMetric)
    assert metric.prefix == 'nyud_depth'


def test_prefix_defaults_to_task_and_can_be_set(sample, evaluate):
    samples = [sample(['depth'], gt_depth=[[2.0]], pred_depth=[[1.0]])]
    assert set(evaluate(DepthMetric(task='depth'), samples)) == {
        'depth/rmse', 'depth/log_rmse', 'depth/abs_rel', 'depth/sq_rel'}
    assert 'nyud/rmse' in evaluate(DepthMetric(task='depth', prefix='nyud'), samples)


def test_samples_of_other_tasks_are_ignored(sample, evaluate):
    # the other samples have no depth fields at all: reading them would raise
    samples = [sample(['cls'], gt_label=1),
               sample(['depth'], gt_depth=[[2.0]], pred_depth=[[1.0]]),
               sample(['semseg'], gt_sem_seg=[[0]])]
    assert evaluate(DepthMetric(task='depth'), samples)['depth/rmse'] == pytest.approx(1.0)


def test_sample_of_several_tasks_is_measured(sample, evaluate):
    samples = [sample(['semseg', 'depth'], gt_depth=[[2.0]], pred_depth=[[0.5]])]
    assert evaluate(DepthMetric(task='depth'), samples)['depth/rmse'] == pytest.approx(1.5)


def test_no_sample_of_the_task_is_a_clear_error(sample, evaluate):
    with pytest.raises(ValueError, match="no validation sample is labelled for task 'dpeth'"):
        evaluate(DepthMetric(task='dpeth'), [sample(['depth'], gt_depth=[[1.0]])])


def test_missing_prediction_names_key_and_task(sample, evaluate):
    with pytest.raises(KeyError, match="task 'depth'.*no 'pred_depth'"):
        evaluate(DepthMetric(task='depth'), [sample(['depth'], gt_depth=[[1.0]])])


def test_shape_mismatch_names_both_shapes(sample, evaluate):
    with pytest.raises(ValueError, match=r'pred_depth has shape \(1, 2\).*gt_depth has \(1, 1\)'):
        evaluate(DepthMetric(task='depth'),
                 [sample(['depth'], gt_depth=[[1.0]], pred_depth=[[1.0, 2.0]])])


def test_one_entry_per_sample_so_padded_duplicates_are_dropped(sample, evaluate):
    # A distributed sampler pads the last batch with repeats; mmengine drops every entry
    # past the dataset size. That is exact only with one entry per sample, other tasks'
    # samples included.
    a = sample(['depth'], gt_depth=[[2.0]], pred_depth=[[1.0]])  # error 1
    b = sample(['cls'], gt_label=0)
    c = sample(['depth'], gt_depth=[[2.0]], pred_depth=[[5.0]])  # error 3
    # dataset [a, b, c]; the padded repeat of `a` would give sqrt((1+9+1)/3)
    result = evaluate(DepthMetric(task='depth'), [a, b, c, a], size=3)
    assert result['depth/rmse'] == pytest.approx((10 / 2) ** 0.5)


def test_bad_task_argument():
    with pytest.raises(ValueError, match='`task` must be a task name'):
        DepthMetric(task='')
