"""Adapt a meta-trained Chameleon to a new dense task from a few labelled images.

    python tools/fewshot.py CONFIG CKPT --support DIR --query DIR --out DIR
        [--steps 100] [--lr 1e-3] [--loss bce|l1|spatial_softmax] [--tune-extra PREFIX ...]

A folder holds ``images/<name>.{png,jpg}`` and, for the support (and, to get a metric, the
query), ``labels/<name>.{png,npy}``: a PNG is grey (1 channel) or RGB (3), its values / 255
(a 0/1 PNG is taken as it is); an ``.npy`` is [H, W] or [H, W, C] with values in [0, 1]. Every
label channel becomes a sub-task with a new bias set started from the mean of the meta-trained
ones; the bias sets, alphas and matching LayerNorm are tuned on the support images (episodes
split half/half); then each query image is predicted (sliding windows when it is larger than
the model) and written to ``--out`` as ``<name>.npy`` ([H, W, C] probabilities) and PNG
(``<name>.png`` for 1 or 3 channels, else ``<name>_c<i>.png``). With query labels the metric
(IoU for BCE tasks, MAE for L1 tasks, peak distance for spatial-softmax tasks) is printed as
JSON and written to ``--out/metrics.json`` (when every query image has a label).
"""
import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from modzoo.models.chameleon import LOSS_TYPES
from modzoo.models.chameleon_adaptation import (add_task, dense_metric, finetune, predict_sliding,
                                                tiles)
from modzoo.zoo import init_model

IMAGE_EXTS = ('.png', '.jpg', '.jpeg')


def read_image(path: Path) -> np.ndarray:
    """RGB float32 [H, W, 3] in [0, 1]."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f'{path}: not a readable image')
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255


def read_label(path: Path) -> np.ndarray:
    """float32 [H, W, C] in [0, 1] from a PNG (grey or RGB) or an .npy ([H, W] or [H, W, C])."""
    if path.suffix == '.npy':
        y = np.load(path, allow_pickle=False).astype(np.float32)
    else:
        y = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if y is None:
            raise ValueError(f'{path}: not a readable label image')
        if y.ndim == 3:
            y = cv2.cvtColor(y[..., :3], cv2.COLOR_BGR2RGB)
        y = y.astype(np.float32)
        if y.max() > 1:
            y /= 255
    if y.ndim == 2:
        y = y[..., None]
    if y.ndim != 3 or not (0 <= y.min() and y.max() <= 1):
        raise ValueError(f'{path}: a label must be [H, W] or [H, W, C] with values in [0, 1]; '
                         f'got shape {list(y.shape)}, range [{y.min():.3g}, {y.max():.3g}]')
    return y


def read_folder(folder: str, need_labels: bool):
    """(names, images [K, 3, H, W], labels [K, C, H, W] or None) of a folder."""
    root = Path(folder)
    names = sorted(p for p in (root / 'images').glob('*') if p.suffix.lower() in IMAGE_EXTS)
    if not names:
        raise ValueError(f'{root}: no images in {root / "images"} (K=0); expected '
                         f'images/<name>{{{",".join(IMAGE_EXTS)}}}')
    images, labels = [], []
    for path in names:
        candidates = [root / 'labels' / (path.stem + ext) for ext in ('.png', '.npy')]
        found = [p for p in candidates if p.exists()]
        if not found:
            if need_labels:
                raise FileNotFoundError(f'{root}: image {path.name} has no label; expected '
                                        f'{candidates[0]} or {candidates[1]}')
            labels = None
        images.append(read_image(path))
        if labels is not None and found:
            labels.append((found[0], read_label(found[0])))
    return names, images, labels


def check_sizes(names, images, labels, size, channels=None):
    """Every image and label the same size as the first support image; label channels equal."""
    for path, img in zip(names, images):
        if img.shape[:2] != size:
            raise ValueError(f'{path}: image size {img.shape[:2]} differs from the support '
                             f'images\' {size}')
    for path, y in labels or []:
        if y.shape[:2] != size:
            raise ValueError(f'{path}: label size {y.shape[:2]} differs from the images\' '
                             f'{size}')
        if channels is not None and y.shape[2] != channels:
            raise ValueError(f'{path}: {y.shape[2]} label channels, the support labels have '
                             f'{channels}')


def write_prediction(out: Path, name: str, prob: np.ndarray):
    """prob [H, W, C] -> <name>.npy and PNG(s)."""
    np.save(out / f'{name}.npy', prob)
    png = (prob * 255).round().astype(np.uint8)
    if prob.shape[2] in (1, 3):
        img = png[..., 0] if prob.shape[2] == 1 else cv2.cvtColor(png, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(out / f'{name}.png'), img)
    else:
        for i in range(prob.shape[2]):
            cv2.imwrite(str(out / f'{name}_c{i}.png'), png[..., i])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--support', required=True, help='folder with images/ and labels/')
    parser.add_argument('--query', required=True, help='folder with images/ (labels/ optional)')
    parser.add_argument('--out', required=True, help='where predictions are written')
    parser.add_argument('--steps', type=int, default=100)
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--loss', choices=sorted(LOSS_TYPES),
                        help='default: bce for 0/1 labels, l1 otherwise')
    parser.add_argument('--tune-extra', nargs='*', default=[],
                        help="prefixes of more parameters to tune, e.g. 'decoder.head_out'")
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)

    s_names, s_images, s_labels = read_folder(args.support, need_labels=True)
    q_names, q_images, q_labels = read_folder(args.query, need_labels=False)
    size, channels = s_images[0].shape[:2], s_labels[0][1].shape[2]
    check_sizes(s_names, s_images, s_labels, size, channels)
    check_sizes(q_names, q_images, q_labels, size, channels)
    binary = all(np.isin(y, (0., 1.)).all() for _, y in s_labels)
    loss_type = LOSS_TYPES[args.loss or ('bce' if binary else 'l1')]

    torch.manual_seed(args.seed)
    model = init_model(args.config, args.checkpoint)
    window = model.image_encoder.img_size
    if size[0] < window[0] or size[1] < window[1]:
        raise ValueError(f'{s_names[0]}: images of {size} are smaller than the model size '
                         f'{window}')
    norm = model.data_preprocessor.normalize
    x_s = norm(torch.from_numpy(np.stack(s_images)).permute(0, 3, 1, 2))
    y_s = torch.from_numpy(np.stack([y for _, y in s_labels])).permute(0, 3, 1, 2)
    t_idx, g_idx = add_task(model, channels)
    history = finetune(model, x_s, y_s, t_idx, g_idx, loss_type, steps=args.steps, lr=args.lr,
                       extra_parameters=args.tune_extra, seed=args.seed)
    print(f'tuned {args.steps} steps: loss {history[0]:.4f} -> {history[-1]:.4f}',
          file=sys.stderr)

    stride = [w // 2 for w in window]
    sx, sy = tiles(x_s, window, stride), tiles(y_s, window, stride)    # [K * n, C, h, w]
    with torch.no_grad():
        support = model.encode_support(
            sx[None, None].expand(1, channels, *sx.shape),
            sy.transpose(0, 1)[None, :, :, None], t_idx[None], g_idx[None])
    out = Path(args.out)
    os.makedirs(out, exist_ok=True)
    preds = []
    for path, img in zip(q_names, q_images):
        x = norm(torch.from_numpy(img).permute(2, 0, 1))
        logits = predict_sliding(model, support, x[None, None].expand(channels, 1, *x.shape))
        prob = logits[:, 0, 0].sigmoid()                                  # [C, H, W]
        preds.append(prob)
        write_prediction(out, path.stem, prob.permute(1, 2, 0).numpy())
    print(f'wrote {len(q_names)} predictions to {out}', file=sys.stderr)
    if q_labels:
        label = torch.from_numpy(np.stack([y for _, y in q_labels])).permute(0, 3, 1, 2)
        metrics = dense_metric(torch.stack(preds), label, loss_type)
        (out / 'metrics.json').write_text(json.dumps(metrics))
        print(json.dumps(metrics))
    return 0


if __name__ == '__main__':
    sys.exit(main())
