"""Multi-label classification: mAP and the per-class / overall precision, recall and F1."""
import numpy as np

from modzoo.registry import METRICS
from .base import TaskMetric, safe_div


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """AP of one class, as sklearn's ``average_precision_score``.

    AP = sum_n (R_n - R_{n-1}) P_n over the distinct scores taken as thresholds, highest
    first (tied scores form one threshold). No interpolation.

    Args:
        scores: [N] float, the class's score per sample.
        targets: [N] bool, whether the sample has the class; at least one True.
    """
    order = np.argsort(-scores, kind='stable')
    scores, targets = scores[order], targets[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tp = np.cumsum(targets)[last_of_tie]
    precision = tp / (last_of_tie + 1)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(recall, prepend=0) * precision))


@METRICS.register_module()
class MultiLabelMetric(TaskMetric):
    """mAP, CP/CR/CF1, CF1_mean and OP/OR/OF1 of multi-label classification, in percent.

    Reads ``pred_scores`` [C] (sigmoid probabilities) and ``gt_labels`` [C] (multi-hot).

    - ``mAP``: mean over classes of :func:`average_precision`; classes without a positive
      sample in the set are skipped.
    - At the threshold ``thr`` (a class is predicted when its score is ``>= thr``), with
      per-class counts TP_c, predicted Np_c and actual Ng_c pooled over the set, and
      0/0 taken as 0 (sklearn's ``zero_division=0``), averaging over all C classes:
      P_c = TP_c / Np_c, R_c = TP_c / Ng_c, F1_c = 2 P_c R_c / (P_c + R_c).

      - ``CP`` = mean_c P_c, ``CR`` = mean_c R_c.
      - ``CF1`` = 2 CP CR / (CP + CR): the F1 of the mean precision and mean recall, as
        ML-GCN and most multi-label papers report it.
      - ``CF1_mean`` = mean_c F1_c: the mean of the per-class F1 (sklearn's macro F1).
      - ``OP`` = sum TP / sum Np, ``OR`` = sum TP / sum Ng, ``OF1`` = 2 OP OR / (OP + OR)
        (sklearn's micro average).

    Args:
        task: the task measured.
        thr: the score threshold of a positive prediction, default 0.5.
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir`` of :class:`TaskMetric`.
    """

    def __init__(self, task: str, thr: float = 0.5, **kwargs):
        super().__init__(task, **kwargs)
        if not 0 < thr < 1:
            raise ValueError(f'MultiLabelMetric: `thr` must be in (0, 1), got {thr!r}')
        self.thr = thr

    def sample_stats(self, sample: dict) -> dict:
        scores, labels = self.pred_and_gt(sample, 'pred_scores', 'gt_labels')  # [C], [C]
        if not ((labels == 0) | (labels == 1)).all():
            raise ValueError(f"MultiLabelMetric: gt_labels of task '{self.task}' "
                             f"({sample.get('img_path')}) must be multi-hot (0 or 1), got "
                             f'{labels.tolist()}')
        # AP ranks all samples, so the scores themselves are kept: [1, C] per sample.
        return dict(scores=scores.reshape(1, -1).float().cpu().numpy(),
                    labels=labels.reshape(1, -1).bool().cpu().numpy())

    def summarize(self, stats: list) -> dict:
        scores = np.concatenate([s['scores'] for s in stats])  # [N, C]
        labels = np.concatenate([s['labels'] for s in stats])  # [N, C]
        with_positive = np.flatnonzero(labels.any(0))
        if not len(with_positive):
            raise ValueError(f"MultiLabelMetric: no sample of task '{self.task}' has a "
                             'positive label; there is nothing to measure')
        ap = [average_precision(scores[:, c], labels[:, c]) for c in with_positive]

        predicted = scores >= self.thr
        tp, n_pred, n_gt = (predicted & labels).sum(0), predicted.sum(0), labels.sum(0)
        precision, recall = safe_div(tp, n_pred), safe_div(tp, n_gt)
        cp, cr = precision.mean(), recall.mean()
        op, orr = safe_div(tp.sum(), n_pred.sum()), safe_div(tp.sum(), n_gt.sum())
        metrics = dict(
            mAP=np.mean(ap),
            CP=cp, CR=cr, CF1=safe_div(2 * cp * cr, cp + cr),
            CF1_mean=safe_div(2 * precision * recall, precision + recall).mean(),
            OP=op, OR=orr, OF1=safe_div(2 * op * orr, op + orr))
        return {key: float(100 * value) for key, value in metrics.items()}
