import pytest

from modzoo.evaluation.metrics.segmentation import IoUMetric


def _samples(sample, key='sem_seg'):
    return [
        # valid (gt, pred): (0,0) (0,1) (1,1) (1,1) (2,2); the 255 pixel (pred 0) never counts
        sample(['seg'], **{f'gt_{key}': [[0, 0, 1], [1, 2, 255]],
                           f'pred_{key}': [[0, 1, 1], [1, 2, 0]]}),
        # valid: (2,2) (2,0); padding rows are 255
        sample(['seg'], **{f'gt_{key}': [[2, 2], [255, 255]],
                           f'pred_{key}': [[2, 0], [1, 1]]}),
        sample(['depth'], gt_depth=[[1.0]]),  # another task: ignored
    ]


# pooled: class 0 TP 1 FP 1 FN 1 -> 1/3; class 1 TP 2 FP 1 FN 0 -> 2/3;
# class 2 TP 2 FP 0 FN 1 -> 2/3. mIoU = 5/9. aAcc = 5 right of 7 valid pixels.
def test_hand_computed(sample, evaluate):
    r = evaluate(IoUMetric(task='seg', num_classes=3), _samples(sample))
    assert r['seg/mIoU'] == pytest.approx(100 * 5 / 9)
    assert r['seg/aAcc'] == pytest.approx(100 * 5 / 7)


def test_absent_class_is_left_out_of_the_mean(sample, evaluate):
    r = evaluate(IoUMetric(task='seg', num_classes=4), _samples(sample))
    assert r['seg/mIoU'] == pytest.approx(100 * 5 / 9)


def test_parts_key(sample, evaluate):
    r = evaluate(IoUMetric(task='seg', num_classes=3, key='parts'), _samples(sample, 'parts'))
    assert r['seg/mIoU'] == pytest.approx(100 * 5 / 9)


def test_label_out_of_range_is_a_clear_error(sample, evaluate):
    bad = [sample(['seg'], gt_sem_seg=[[0, 3]], pred_sem_seg=[[0, 0]])]
    with pytest.raises(ValueError, match=r'gt_sem_seg .* holds 3, outside \[0, 3\)'):
        evaluate(IoUMetric(task='seg', num_classes=3), bad)


def test_all_ignored_is_a_clear_error(sample, evaluate):
    bad = [sample(['seg'], gt_sem_seg=[[255]], pred_sem_seg=[[0]])]
    with pytest.raises(ValueError, match='every gt_sem_seg pixel'):
        evaluate(IoUMetric(task='seg', num_classes=3), bad)


def test_bad_key():
    with pytest.raises(ValueError, match="`key` must be 'sem_seg' or 'parts'"):
        IoUMetric(task='seg', num_classes=3, key='semseg')
