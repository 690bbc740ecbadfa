"""Metrics (registered in ``modzoo.registry.METRICS``), Δm and the prior baseline."""
from .delta_m import (HIGHER_IS_BETTER, PRIMARY_METRIC, delta_m, load_metrics, metric_directions,
                      primary_metric_keys)
from .metrics import (Accuracy, BoundaryMetric, CaptionMetric, CocoMetric, DepthMetric, IoUMetric,
                      MultiLabelMetric, NormalMetric, RetrievalMetric, SaliencyMetric)
from .prior_baseline import PriorBaseline

__all__ = ['Accuracy', 'BoundaryMetric', 'CaptionMetric', 'CocoMetric', 'RetrievalMetric',
           'DepthMetric', 'IoUMetric', 'MultiLabelMetric', 'NormalMetric', 'SaliencyMetric',
           'PriorBaseline', 'HIGHER_IS_BETTER', 'PRIMARY_METRIC', 'delta_m',
           'load_metrics', 'metric_directions', 'primary_metric_keys']
