"""Δm: the mean relative gain of a multi-task model over single-task baselines.

Δm = 100 / T * sum_t (-1)^{l_t} (M_mt,t - M_st,t) / M_st,t, with l_t = 1 when a lower value
of metric t is better (Vandenhende et al., TPAMI 2021, Eq. 10). The survey takes one metric
per task: semseg mIoU, parts mIoU, saliency mIoU, normals mean angle, depth RMSE, edge odsF.

Typical use, with the metrics JSON that mmengine writes after ``runner.test()``
(``<work_dir>/<timestamp>/<timestamp>.json``) for the multi-task model and for each
single-task baseline::

    mt = load_metrics('mt.json')
    st = load_metrics('st_semseg.json', 'st_depth.json')
    keys = ['semseg/mIoU', 'depth/rmse']
    print(delta_m(mt, st, metric_directions(keys)))
"""
import json
import math
import numbers
from typing import Dict, Iterable, List

# Whether a larger value is better, per metric name (the key after the task prefix).
HIGHER_IS_BETTER = {
    # Accuracy
    'top1': True, 'top5': True,
    # MultiLabelMetric
    'mAP': True, 'CP': True, 'CR': True, 'CF1': True, 'CF1_mean': True,
    'OP': True, 'OR': True, 'OF1': True,
    # IoUMetric, SaliencyMetric, BoundaryMetric
    'mIoU': True, 'aAcc': True, 'maxF': True, 'odsF': True,
    # DepthMetric
    'rmse': False, 'log_rmse': False, 'abs_rel': False, 'sq_rel': False,
    # NormalMetric
    'mean_angle': False, 'median_angle': False, 'rmse_angle': False,
    'within_11.25': True, 'within_22.5': True, 'within_30': True,
    # CaptionMetric, RetrievalMetric
    'BLEU-1': True, 'BLEU-2': True, 'BLEU-3': True, 'BLEU-4': True, 'CIDEr': True,
    'i2t_R@1': True, 'i2t_R@5': True, 'i2t_R@10': True, 't2i_R@1': True, 't2i_R@5': True,
    't2i_R@10': True, 'R_mean': True,
    # CocoMetric
    **{f'{kind}_{name}': True for kind in ('bbox', 'segm')
       for name in ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')},
}


# The metric of each evaluator type that Δm averages by default, one per task (saliency: maxF
# as InvPT/TaskExpert report; the survey's Δm uses its mIoU: pass its key explicitly).
PRIMARY_METRIC = {
    'Accuracy': 'top1', 'MultiLabelMetric': 'mAP', 'IoUMetric': 'mIoU', 'DepthMetric': 'rmse',
    'NormalMetric': 'mean_angle', 'SaliencyMetric': 'maxF', 'BoundaryMetric': 'odsF',
    'CaptionMetric': 'CIDEr', 'RetrievalMetric': 'R_mean',
    'CocoMetric': 'bbox_mAP',
}


def primary_metric_keys(evaluator_cfg) -> List[str]:
    """``<prefix>/<primary metric>`` of every metric cfg (a list or one dict) that has a task:
    the keys Δm averages by default."""
    keys = []
    for metric in evaluator_cfg if isinstance(evaluator_cfg, (list, tuple)) else [evaluator_cfg]:
        if 'task' not in metric:
            continue
        kind = metric['type'].rsplit('.', 1)[-1]
        if kind not in PRIMARY_METRIC:
            raise KeyError(f"Δm: no primary metric is known for evaluator type '{kind}' "
                           f"(task '{metric['task']}'); known: {sorted(PRIMARY_METRIC)}. "
                           'Name the keys explicitly (tools/test.py --delta-m-keys).')
        keys.append(f"{metric.get('prefix') or metric['task']}/{PRIMARY_METRIC[kind]}")
    return keys


def delta_m(mt: dict, st: dict, higher_is_better: Dict[str, bool]) -> float:
    """Δm in percent over the metric keys of ``higher_is_better``.

    Args:
        mt: metrics of the multi-task model, ``{key: value}`` (keys like ``'depth/rmse'``).
        st: metrics of the single-task baselines, same keys.
        higher_is_better: ``{key: bool}``, the metrics to average and their direction.
    """
    if not higher_is_better:
        raise ValueError('delta_m: `higher_is_better` names no metric to average over')
    gains = []
    for key, higher in higher_is_better.items():
        m_mt, m_st = _value(mt, key, 'multi-task'), _value(st, key, 'single-task')
        if m_st == 0:
            raise ValueError(f"delta_m: the single-task baseline of '{key}' is 0; Δm divides "
                             'by it')
        sign = 1 if higher else -1
        gains.append(sign * (m_mt - m_st) / m_st)
    return 100 * sum(gains) / len(gains)


def metric_directions(keys: Iterable[str]) -> Dict[str, bool]:
    """``{key: higher_is_better}`` for metric keys like ``'depth/rmse'``, looked up in
    :data:`HIGHER_IS_BETTER` by the name after the last ``/``."""
    directions = {}
    for key in keys:
        name = key.rsplit('/', 1)[-1]
        if name not in HIGHER_IS_BETTER:
            raise KeyError(
                f"metric_directions: no direction known for metric '{name}' (key '{key}'); "
                f'known: {sorted(HIGHER_IS_BETTER)}. Pass `higher_is_better` to delta_m '
                'yourself, or add the name to HIGHER_IS_BETTER in modzoo/evaluation/delta_m.py')
        directions[key] = HIGHER_IS_BETTER[name]
    return directions


def load_metrics(*paths: str) -> dict:
    """The metrics of one or more JSON files, each an object ``{metric key: value}`` (other
    entries, such as mmengine's ``time``, are kept and simply not used), merged into one
    dict. A key in two files is an error."""
    merged, origin = {}, {}
    for path in paths:
        try:
            with open(path) as f:
                metrics = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f'load_metrics: no metrics file at {path}') from None
        except json.JSONDecodeError as e:
            raise ValueError(f'load_metrics: {path} is not valid JSON ({e})') from None
        if not isinstance(metrics, dict):
            raise ValueError(f'load_metrics: {path} must hold a JSON object '
                             f'{{"task/metric": value}}, got a {type(metrics).__name__}')
        for key, value in metrics.items():
            if key in merged:
                raise ValueError(f"load_metrics: metric '{key}' is in both {origin[key]} "
                                 f'and {path}')
            merged[key], origin[key] = value, path
    return merged


def _value(metrics: dict, key: str, which: str) -> float:
    if key not in metrics:
        raise KeyError(f"delta_m: the {which} metrics have no '{key}'; they have "
                       f'{sorted(metrics)}')
    value = metrics[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not math.isfinite(value):
        raise ValueError(f"delta_m: the {which} metric '{key}' must be a finite number, "
                         f'got {value!r}')
    return float(value)
