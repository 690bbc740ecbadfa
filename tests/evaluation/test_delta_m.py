import json

import pytest

from modzoo.evaluation.delta_m import delta_m, load_metrics, metric_directions


def test_worked_example():
    mt = {'semseg/mIoU': 66.0, 'depth/rmse': 0.55, 'sal/maxF': 84.0, 'other/top1': 1.0}
    st = {'semseg/mIoU': 60.0, 'depth/rmse': 0.50, 'sal/maxF': 80.0}
    directions = {'semseg/mIoU': True, 'depth/rmse': False, 'sal/maxF': True}
    # semseg +(66 - 60)/60 = +10 %; depth -(0.55 - 0.50)/0.50 = -10 %; sal +(84 - 80)/80 = +5 %
    # mean over the 3 metrics named in `directions`: (10 - 10 + 5) / 3
    assert delta_m(mt, st, directions) == pytest.approx(5 / 3)


def test_lower_is_better_improvement_counts_positive():
    assert delta_m({'d/rmse': 0.4}, {'d/rmse': 0.5}, {'d/rmse': False}) == pytest.approx(20)


def test_metric_directions():
    assert metric_directions(['nyud_depth/rmse', 'normals/mean_angle', 'seg/mIoU',
                              'normals/within_11.25']) == {
        'nyud_depth/rmse': False, 'normals/mean_angle': False, 'seg/mIoU': True,
        'normals/within_11.25': True}
    with pytest.raises(KeyError, match="no direction known for metric 'loss'"):
        metric_directions(['x/loss'])


def test_load_metrics_merges_files(tmp_path):
    (tmp_path / 'a.json').write_text(json.dumps({'semseg/mIoU': 60.0, 'time': 0.1}))
    (tmp_path / 'b.json').write_text(json.dumps({'depth/rmse': 0.5}))
    st = load_metrics(tmp_path / 'a.json', tmp_path / 'b.json')
    assert st == {'semseg/mIoU': 60.0, 'time': 0.1, 'depth/rmse': 0.5}
    with pytest.raises(ValueError, match="'semseg/mIoU' is in both"):
        load_metrics(tmp_path / 'a.json', tmp_path / 'a.json')


def test_load_metrics_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='no metrics file at'):
        load_metrics(tmp_path / 'missing.json')
    (tmp_path / 'list.json').write_text('[1, 2]')
    with pytest.raises(ValueError, match='must hold a JSON object'):
        load_metrics(tmp_path / 'list.json')
    (tmp_path / 'bad.json').write_text('{')
    with pytest.raises(ValueError, match='is not valid JSON'):
        load_metrics(tmp_path / 'bad.json')


def test_delta_m_errors():
    with pytest.raises(KeyError, match="multi-task metrics have no 'd/rmse'"):
        delta_m({}, {'d/rmse': 0.5}, {'d/rmse': False})
    with pytest.raises(ValueError, match="baseline of 'd/rmse' is 0"):
        delta_m({'d/rmse': 0.5}, {'d/rmse': 0}, {'d/rmse': False})
    with pytest.raises(ValueError, match='must be a finite number'):
        delta_m({'d/rmse': 'x'}, {'d/rmse': 0.5}, {'d/rmse': False})
