"""Task losses, as in the InvPT/ATRC code (``losses/loss_functions.py``), plus ASL, and
``stack_gt``, which gathers their targets from the data samples.

Every dense loss is a mean over the valid pixels of the batch, and 0 (still attached to the
graph) when a batch has no valid pixel, e.g. human parts on person-less images.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F

from modzoo.structures import DENSE_FIELDS, TaskDataSample


def stack_gt(data_samples: List[TaskDataSample], key: str, head: str,
             size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """``key`` of every sample stacked to [B, ...].

    With ``size`` (H, W), each dense gt [..., h, w] is first padded at the bottom and right
    with its ignore value (``DENSE_FIELDS``) to [..., H, W]. A sample without ``key``, or a gt
    larger than ``size``, raises an error naming the head, the key and the image.
    """
    gts = []
    for sample in data_samples:
        img = sample.metainfo.get('img_path', 'a data sample')
        if key not in sample:
            raise KeyError(f"{head} needs '{key}' in every data sample; {img} has none.")
        gt = sample.get(key)
        if size is not None:
            (h, w), (H, W) = gt.shape[-2:], size
            if h > H or w > W:
                raise ValueError(f'{head}: {key} of {img} is {h}x{w}, larger than the padded '
                                 f'batch {H}x{W}.')
            gt = F.pad(gt, (0, W - w, 0, H - h), value=DENSE_FIELDS[key]['ignore'])
        gts.append(gt)
    return torch.stack(gts)


def _mean_over(loss_sum: torch.Tensor, num_valid: torch.Tensor) -> torch.Tensor:
    return loss_sum / num_valid.clamp(min=1)


def seg_cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                      ignore_index: int = 255) -> torch.Tensor:
    """Softmax CE of logits [B, C, H, W] against target [B, H, W] (long), averaged over the
    pixels whose target is not ``ignore_index``."""
    loss = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction='sum')
    return _mean_over(loss, (target != ignore_index).sum())


def depth_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """|pred - target| of pred, target [B, H, W] (metres), averaged over pixels with
    target > 0 (0 = no depth)."""
    valid = target > 0
    return _mean_over(torch.where(valid, (pred - target).abs(), 0).sum(), valid.sum())


def normal_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the L2-normalised pred [B, 3, H, W] and target [B, 3, H, W] (unit vectors,
    0-vector = invalid): the channel-summed |n - g| averaged over valid pixels."""
    valid = target.ne(0).any(dim=1, keepdim=True)                        # [B, 1, H, W]
    diff = torch.where(valid, (F.normalize(pred, dim=1) - target).abs(), 0)
    return _mean_over(diff.sum(), valid.sum())


def balanced_bce_loss(logits: torch.Tensor, target: torch.Tensor, pos_weight: float = 0.95,
                      ignore_index: int = 255) -> torch.Tensor:
    """InvPT's balanced binary CE for edges: logits, target [B, H, W] (target in {0, 1} or
    ``ignore_index``). Mean over valid pixels of
    ``w * y * -log(sigmoid(x)) + (1 - w) * (1 - y) * -log(1 - sigmoid(x))``, w = pos_weight;
    i.e. BCE-with-logits with pos_weight w / (1 - w) (19 for 0.95) divided by 1 / (1 - w)."""
    valid = target != ignore_index
    y = torch.where(valid, target, 0).to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(
        logits, y, pos_weight=logits.new_tensor(pos_weight / (1 - pos_weight)), reduction='none')
    return _mean_over(torch.where(valid, bce, 0).sum(), valid.sum()) * (1 - pos_weight)


def balanced_cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                           ignore_index: int = 255) -> torch.Tensor:
    """InvPT's class-balanced 2-way CE for saliency: logits [B, 2, H, W], target [B, H, W] in
    {0, 1} or ``ignore_index``. Class 1 is weighted by the fraction of negatives among the
    batch's valid pixels, class 0 by the fraction of positives; the weighted sum is divided by
    the number of valid pixels."""
    valid = target != ignore_index
    num_valid = valid.sum()
    w_pos = _mean_over((target == 0).sum(), num_valid).to(logits.dtype)
    loss = F.cross_entropy(logits, target, weight=torch.stack([1 - w_pos, w_pos]),
                           ignore_index=ignore_index, reduction='sum')
    return _mean_over(loss, num_valid)


def asymmetric_loss(logits: torch.Tensor, target: torch.Tensor, gamma_pos: float = 0.,
                    gamma_neg: float = 4., clip: float = 0.05,
                    eps: float = 1e-8) -> torch.Tensor:
    """Asymmetric loss (Ridnik et al., ICCV 2021) of logits [B, C] against multi-hot target
    [B, C], averaged over the B * C entries: with p = sigmoid(x), p_m = max(p - clip, 0),
    ``-y (1 - p)^gamma_pos log p - (1 - y) p_m^gamma_neg log(1 - p_m)``."""
    p = logits.sigmoid()
    p_m = (p - clip).clamp(min=0)
    pos = target * (1 - p).pow(gamma_pos) * p.clamp(min=eps).log()
    neg = (1 - target) * p_m.pow(gamma_neg) * (1 - p_m).clamp(min=eps).log()
    return -(pos + neg).mean()
