"""Few-shot adaptation of a meta-trained ``Chameleon`` to a new dense task.

A new task of C label channels gets C new bias sets (and one alpha row), each started from the
mean of the existing ones, and only the task parameters (bias sets, alphas, matching LayerNorm;
optionally more) are tuned on episodes made from the K labelled images: each step shuffles
them and splits them half/half into support and query, as the official fine-tuning. Images
larger than the model's size are tiled for the support and predicted with overlapping,
Gaussian-weighted sliding windows.
"""
import math
from typing import List, Sequence, Tuple

import torch
from torch import nn

from .chameleon import LOSS_BCE, LOSS_L1, Chameleon, episode_losses
from .layers.bias_sets import bias_set_parameters


def add_task(model: Chameleon, channels: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Append ``channels`` bias sets to every table and one alpha row per level (``channels``
    rows with ``separate_alpha``), each the mean of the existing rows; a ``MoEViT`` image
    encoder also gets one router per channel, the mean of its routers (``add_tasks``).

    Returns t_idx [channels] and g_idx [channels] of the new task.
    """
    def grow(owner, name, rows):
        old = getattr(owner, name)
        new = torch.cat([old.data, old.data.mean(0, keepdim=True).expand(rows, -1)])
        setattr(owner, name, nn.Parameter(new, requires_grad=old.requires_grad))

    encoder = model.image_encoder
    for name, _ in bias_set_parameters(encoder):
        module_name, attr = name.rsplit('.', 1)
        grow(encoder.get_submodule(module_name), attr, channels)
    encoder.n_bias_sets += channels
    if hasattr(encoder, 'add_tasks'):     # a MoEViT: one router per task
        encoder.add_tasks(channels)
    t_idx = torch.arange(model.n_tasks, model.n_tasks + channels)
    model.n_tasks += channels
    if not model.matching.level_mix:
        return t_idx, torch.zeros(channels, dtype=torch.long)
    rows = channels if model.separate_alpha else 1
    first = model.matching.alpha[0].shape[0]
    for level in range(len(model.matching.alpha)):
        grow(model.matching.alpha, str(level), rows)
    g_idx = (torch.arange(first, first + channels) if model.separate_alpha
             else torch.full((channels,), first))
    return t_idx, g_idx


def window_starts(length: int, window: int, stride: int) -> List[int]:
    """Starts of windows of ``window`` covering [0, length) with at most ``stride`` apart."""
    if length < window:
        raise ValueError(f'image side {length} is smaller than the model size {window}')
    n = math.ceil((length - window) / stride) + 1
    return sorted({round(i * (length - window) / max(n - 1, 1)) for i in range(n)})


def tiles(x: torch.Tensor, window: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    """x [K, C, H, W] -> the windows covering each image, [K * n_tiles, C, wh, ww]."""
    out = [x[..., r:r + window[0], c:c + window[1]]
           for r in window_starts(x.shape[-2], window[0], stride[0])
           for c in window_starts(x.shape[-1], window[1], stride[1])]
    return torch.stack(out, 1).flatten(0, 1)


def gaussian_window(window: Sequence[int], sigma_scale: float = 0.25) -> torch.Tensor:
    """[wh, ww] weights, 1 at the centre, falling off with sigma = window * sigma_scale."""
    axes = [torch.exp(-0.5 * ((torch.arange(n) - (n - 1) / 2) / (n * sigma_scale)) ** 2)
            for n in window]
    return axes[0][:, None] * axes[1][None]


@torch.no_grad()
def predict_sliding(model: Chameleon, support, x_q: torch.Tensor,
                    stride_ratio: float = 0.5) -> torch.Tensor:
    """x_q [T, M, C, H, W] (H, W >= the model size) -> logits [T, M, 1, H, W]: overlapping
    windows, each predicted with ``support`` and blended with Gaussian weights."""
    window = model.image_encoder.img_size
    stride = [max(1, int(w * stride_ratio)) for w in window]
    H, W = x_q.shape[-2:]
    weight = gaussian_window(window).to(x_q)
    out = x_q.new_zeros(*x_q.shape[:2], 1, H, W)
    total = x_q.new_zeros(H, W)
    for r in window_starts(H, window[0], stride[0]):
        for c in window_starts(W, window[1], stride[1]):
            crop = x_q[None, ..., r:r + window[0], c:c + window[1]]
            logits = model.predict_query(support, crop)[0]
            out[..., r:r + window[0], c:c + window[1]] += logits * weight
            total[r:r + window[0], c:c + window[1]] += weight
    return out / total


def random_crop(x: torch.Tensor, y: torch.Tensor, window: Sequence[int],
                generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """The same random window of every image x [K, C, H, W] and label y [K, L, H, W]."""
    r = int(torch.randint(x.shape[-2] - window[0] + 1, (1,), generator=generator))
    c = int(torch.randint(x.shape[-1] - window[1] + 1, (1,), generator=generator))
    return (x[..., r:r + window[0], c:c + window[1]], y[..., r:r + window[0], c:c + window[1]])


def finetune(model: Chameleon, images: torch.Tensor, labels: torch.Tensor,
             t_idx: torch.Tensor, g_idx: torch.Tensor, loss_type: int, steps: int = 100,
             lr: float = 1e-3, extra_parameters: Sequence[str] = (), seed: int = 0) -> List[float]:
    """Tune the task parameters on K labelled images.

    images [K, C, H, W] normalised, labels [K, L, H, W] in [0, 1] (L channels = the task's
    sub-tasks, t_idx/g_idx [L]); each step takes a random model-size crop of every image,
    shuffles the K images and splits them into support (first half, at least one) and query
    (the rest; with K = 1 the image is both). ``extra_parameters``: name prefixes of other
    parameters to tune too (e.g. 'decoder.head_out'). Returns the loss of every step.
    """
    names = {n for n, _ in model.task_parameters()}
    params = [p for n, p in model.named_parameters()
              if n in names or n.startswith(tuple(extra_parameters))]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    K, L = images.shape[0], labels.shape[1]
    kinds = torch.full((1, L), loss_type)
    model.train()
    history = []
    for _ in range(steps):
        x, y = random_crop(images, labels, model.image_encoder.img_size, gen)
        order = torch.randperm(K, generator=gen)
        n = max(1, K // 2)
        s, q = order[:n], (order[n:] if K > 1 else order)
        x_s = x[s][None, None].expand(1, L, *x[s].shape)
        x_q = x[q][None, None].expand(1, L, *x[q].shape)
        y_s = y[s].transpose(0, 1)[None, :, :, None]        # [1, L, n, 1, h, w]
        y_q = y[q].transpose(0, 1)[None, :, :, None]
        logits = model.forward_episode(x_s, y_s, x_q, t_idx[None], g_idx[None])
        loss = sum(episode_losses(logits, y_q, kinds).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    model.eval()
    return history


def dense_metric(pred: torch.Tensor, label: torch.Tensor, loss_type: int) -> dict:
    """pred (probabilities) and label [M, L, H, W] in [0, 1] -> the task's metric: IoU (%) of
    the maps thresholded at 0.5 for BCE tasks, mean absolute error for L1 tasks, and for
    spatial-softmax tasks the mean distance (pixels) between predicted and true peaks."""
    if loss_type == LOSS_BCE:
        p, t = pred > 0.5, label > 0.5
        inter, union = (p & t).sum((0, 2, 3)).float(), (p | t).sum((0, 2, 3)).float()
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
        return dict(iou=100 * iou.mean().item())
    if loss_type == LOSS_L1:
        return dict(mae=(pred - label).abs().mean().item())
    W = pred.shape[-1]
    flat_p, flat_t = pred.flatten(2).argmax(-1), label.flatten(2).argmax(-1)
    has = label.flatten(2).amax(-1) > 0
    dist = torch.hypot((flat_p // W - flat_t // W).float(), (flat_p % W - flat_t % W).float())
    return dict(peak_distance=dist[has].mean().item() if has.any() else float('nan'))
