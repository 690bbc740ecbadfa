import pytest

from modzoo.evaluation.metrics.classification import Accuracy


def test_topk_hand_computed(sample, evaluate):
    samples = [
        # true class scores highest: rank 0 -> top1 and top2
        sample(['cls'], pred_score=[0.1, 0.6, 0.2, 0.1], gt_label=1),
        # one class (0.5) above the true 0.2, the tie with class 1 counts for it: rank 1
        sample(['cls'], pred_score=[0.5, 0.2, 0.2, 0.1], gt_label=2),
        # three classes above: rank 3
        sample(['cls'], pred_score=[0.4, 0.3, 0.2, 0.1], gt_label=3),
        sample(['depth'], gt_depth=[[1.0]]),  # another task: ignored
    ]
    result = evaluate(Accuracy(task='cls', topk=(1, 2, 5)), samples)
    assert result['cls/top1'] == pytest.approx(100 / 3)  # 1 of 3
    assert result['cls/top2'] == pytest.approx(200 / 3)  # 2 of 3
    assert result['cls/top5'] == pytest.approx(100)      # k >= C = 4: always right


def test_int_topk_and_default_keys(sample, evaluate):
    samples = [sample(['cls'], pred_score=[0.1, 0.9], gt_label=0)]
    assert evaluate(Accuracy(task='cls', topk=1), samples) == {'cls/top1': 0.0}
    assert set(evaluate(Accuracy(task='cls'), samples)) == {'cls/top1', 'cls/top5'}


def test_bad_label_and_topk(sample, evaluate):
    with pytest.raises(ValueError, match=r'gt_label 3 .* not in \[0, 2\)'):
        evaluate(Accuracy(task='cls'), [sample(['cls'], pred_score=[0.1, 0.9], gt_label=3)])
    with pytest.raises(ValueError, match=r'pred_score .* must be \[C\], got \(1, 2\)'):
        evaluate(Accuracy(task='cls'), [sample(['cls'], pred_score=[[0.1, 0.9]], gt_label=0)])
    with pytest.raises(ValueError, match='`topk` must be positive ints'):
        Accuracy(task='cls', topk=(0, 1))
