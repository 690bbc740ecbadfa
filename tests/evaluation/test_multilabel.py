import numpy as np
import pytest
import torch

from modzoo.evaluation.metrics.multilabel import MultiLabelMetric, average_precision


def test_hand_computed(sample, evaluate):
    scores = [[0.9, 0.2, 0.6], [0.8, 0.7, 0.1], [0.3, 0.1, 0.2], [0.6, 0.4, 0.3]]
    labels = [[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]]
    samples = [sample(['ml'], pred_scores=s, gt_labels=torch.tensor(l, dtype=torch.float32))
               for s, l in zip(scores, labels)]
    samples.append(sample(['cls'], gt_label=0))  # another task: ignored
    r = evaluate(MultiLabelMetric(task='ml'), samples)
    # AP, class 0: ranked 0.9(+) 0.8(+) 0.6 0.3 -> R steps 0.5, 0.5 at P 1, 1 -> AP 1
    # AP, class 1: ranked 0.7(+) 0.4 0.2 0.1(+) -> 0.5 * 1 + 0.5 * 2/4 = 0.75
    # class 2 has no positive: skipped. mAP = (1 + 0.75) / 2
    assert r['ml/mAP'] == pytest.approx(87.5)
    # at 0.5, predicted: s1 {0, 2}, s2 {0, 1}, s3 {}, s4 {0}
    # class 0: TP 2, Np 3, Ng 2 -> P 2/3, R 1,   F1 0.8
    # class 1: TP 1, Np 1, Ng 2 -> P 1,   R 1/2, F1 2/3
    # class 2: TP 0, Np 1, Ng 0 -> P 0,   R 0/0 = 0, F1 0
    cp, cr = (2 / 3 + 1 + 0) / 3, (1 + 0.5 + 0) / 3  # 5/9, 1/2
    assert r['ml/CP'] == pytest.approx(100 * cp)
    assert r['ml/CR'] == pytest.approx(100 * cr)
    assert r['ml/CF1'] == pytest.approx(100 * 10 / 19)  # 2 (5/9)(1/2) / (5/9 + 1/2)
    assert r['ml/CF1_mean'] == pytest.approx(100 * 22 / 45)  # (0.8 + 2/3 + 0) / 3
    # overall: TP 3, Np 5, Ng 4
    assert r['ml/OP'] == pytest.approx(60)
    assert r['ml/OR'] == pytest.approx(75)
    assert r['ml/OF1'] == pytest.approx(100 * 2 / 3)  # 2 * 0.6 * 0.75 / 1.35


def test_against_sklearn_on_random_data(sample, evaluate):
    metrics = pytest.importorskip('sklearn.metrics')
    rng = np.random.default_rng(0)
    n, c = 60, 7
    scores = rng.random((n, c)).round(1)  # rounding makes ties, which AP must group
    labels = (rng.random((n, c)) < 0.3).astype(np.float32)
    labels[:, 6] = 0  # a class without positives
    samples = [sample(['ml'], pred_scores=torch.from_numpy(s), gt_labels=torch.from_numpy(l))
               for s, l in zip(scores, labels)]
    r = evaluate(MultiLabelMetric(task='ml', thr=0.45), samples)

    ap = [metrics.average_precision_score(labels[:, k], scores[:, k]) for k in range(6)]
    assert r['ml/mAP'] == pytest.approx(100 * np.mean(ap))
    pred = scores >= 0.45
    cp, cr, cf1, _ = metrics.precision_recall_fscore_support(
        labels, pred, average='macro', zero_division=0)
    op, orr, of1, _ = metrics.precision_recall_fscore_support(
        labels, pred, average='micro', zero_division=0)
    assert (r['ml/CP'], r['ml/CR'], r['ml/CF1_mean']) == pytest.approx(
        (100 * cp, 100 * cr, 100 * cf1))
    assert r['ml/CF1'] == pytest.approx(100 * 2 * cp * cr / (cp + cr))
    assert (r['ml/OP'], r['ml/OR'], r['ml/OF1']) == pytest.approx(
        (100 * op, 100 * orr, 100 * of1))


def test_average_precision_ties_form_one_threshold():
    # scores 0.5(+) 0.5(-) 0.2(+): one threshold at 0.5 gives P 1/2 R 1/2, then P 2/3 R 1
    ap = average_precision(np.array([0.5, 0.5, 0.2]), np.array([True, False, True]))
    assert ap == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)


def test_non_binary_labels_are_rejected(sample, evaluate):
    with pytest.raises(ValueError, match='must be multi-hot'):
        evaluate(MultiLabelMetric(task='ml'),
                 [sample(['ml'], pred_scores=[0.1, 0.2], gt_labels=[1.0, -1.0])])


def test_no_positive_anywhere_is_a_clear_error(sample, evaluate):
    with pytest.raises(ValueError, match='no sample of task .ml. has a positive label'):
        evaluate(MultiLabelMetric(task='ml'),
                 [sample(['ml'], pred_scores=[0.1, 0.2], gt_labels=[0.0, 0.0])])
