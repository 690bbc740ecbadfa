import pytest

from modzoo.evaluation.metrics.saliency import SaliencyMetric


def _samples(sample):
    return [
        # valid (prob, gt): (0.9,1) (0.45,1) (0.2,0); the 255 pixel never counts
        sample(['sal'], pred_saliency=[[0.9, 0.45], [0.2, 0.7]], gt_saliency=[[1, 1], [0, 255]]),
        # valid: (0.4,0) (0.8,1)
        sample(['sal'], pred_saliency=[[0.4, 0.8]], gt_saliency=[[0, 1]]),
        sample(['cls'], gt_label=0),  # another task: ignored
    ]


def test_hand_computed(sample, evaluate):
    r = evaluate(SaliencyMetric(task='sal', thresholds=(0.3, 0.6)), _samples(sample))
    # actual positives 3.
    # t = 0.3: predicted 0.9 0.45 0.4 0.8 = 4, TP 3 -> P 3/4, R 1 -> F = 1.3*0.75/1.225
    # t = 0.6: predicted 0.9 0.8 = 2, TP 2 -> P 1, R 2/3 -> F = 1.3*(2/3)/(0.3 + 2/3) = 0.8966
    assert r['sal/maxF'] == pytest.approx(100 * 1.3 * (2 / 3) / (0.3 + 2 / 3))
    # at 0.5: fg predicted {0.9, 0.8}, gt fg {0.9, 0.45, 0.8}: fg IoU 2/3;
    # bg predicted {0.45, 0.2, 0.4}, gt bg {0.2, 0.4}: bg IoU 2/3
    assert r['sal/mIoU'] == pytest.approx(100 * 2 / 3)


def test_official_sigmoid_quirk(sample, evaluate):
    quirk = SaliencyMetric(task='sal', thresholds=(0.3, 0.6), official_sigmoid_quirk=True)
    r = evaluate(quirk, _samples(sample))
    # sigmoid: 0.9->0.711 0.45->0.611 0.2->0.550 0.4->0.599 0.8->0.690 (all >= 0.5)
    # t = 0.3: all 5 predicted, TP 3 -> P 0.6, R 1 -> F = 0.78/1.18
    # t = 0.6: 0.711 0.611 0.690 predicted = exactly the 3 fg pixels -> F = 1
    assert r['sal/maxF'] == pytest.approx(100)
    assert r['sal/mIoU'] == pytest.approx(100 * 2 / 3)  # mIoU never uses the quirk


def test_default_thresholds_are_the_invpt_ones():
    assert SaliencyMetric(task='sal').thresholds == pytest.approx(
        [0.05 * i for i in range(1, 20)])


def test_non_binary_gt_is_a_clear_error(sample, evaluate):
    with pytest.raises(ValueError, match='must hold 0, 1 or 255'):
        evaluate(SaliencyMetric(task='sal'),
                 [sample(['sal'], pred_saliency=[[0.5]], gt_saliency=[[128]])])
