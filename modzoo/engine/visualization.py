"""Dense predictions, instances and TaskExpert gate maps of a few images as PNG
(``tools/test.py --show-dir``).

Each image runs through the model on its own (batch 1), so every gate map captured while it
runs belongs to it. Everything is cropped to the image (``img_shape``): padding is not shown.
"""
import os.path as osp
from typing import List

import mmcv
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from mmengine.dataset import pseudo_collate

from modzoo.models.necks.taskexpert import TaskGate

SEPARATOR = 2  # white pixels between the tiles of a gate map


def voc_palette(num: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map, uint8 [num, 3]: class i gets the bits of i spread over R, G
    and B from the most significant bit down (255, the ignore value, is light beige)."""
    palette = np.zeros((num, 3), dtype=np.uint8)
    for i in range(num):
        code = i
        for bit in range(7, -1, -1):
            for channel in range(3):
                palette[i, channel] |= ((code >> channel) & 1) << bit
            code >>= 3
    return palette


PALETTE = voc_palette()


def _colormap(values: np.ndarray, name: str) -> np.ndarray:
    """uint8 RGB [H, W, 3] of values [H, W] in [0, 1] through a matplotlib colour map."""
    return (colormaps[name](np.clip(values, 0, 1))[..., :3] * 255).astype(np.uint8)


def render(field: str, value: torch.Tensor, depth_max: float = 1.0) -> np.ndarray:
    """uint8 RGB [H, W, 3] of a gt or prediction of ``field`` (the key after ``gt_``/``pred_``).

    Class maps (sem_seg, parts) through the VOC palette; depth through 'magma' on
    [0, depth_max] metres; normals as (n + 1) / 2 (no normal: black); edge and saliency as
    grey levels of the probability (gt 255, ignored, as mid grey).
    """
    value = value.detach().float().cpu()
    if field in ('sem_seg', 'parts'):
        return PALETTE[value.long().clamp(0, 255).numpy()]
    if field == 'depth':
        return _colormap(value.numpy() / max(depth_max, 1e-6), 'magma')
    if field == 'normal':
        valid = value.ne(0).any(0, keepdim=True)
        rgb = torch.where(valid, (value + 1) / 2, 0).permute(1, 2, 0)
        return (rgb.clamp(0, 1).numpy() * 255).astype(np.uint8)
    if field in ('edge', 'saliency'):
        grey = torch.where(value == 255, 0.5, value.clamp(0, 1))
        return np.repeat((grey.numpy() * 255).astype(np.uint8)[..., None], 3, axis=2)
    raise KeyError(f"render: no rendering for the field '{field}'")


def render_gates(weights: torch.Tensor, pad_shape, img_shape) -> np.ndarray:
    """uint8 RGB of a gate's weights [K, h, w] (K = experts + the memory, last): one 'viridis'
    tile per expert (0 dark, 1 yellow), each the padded canvas cut to the image, side by side."""
    tiles = F.interpolate(weights[None].float().cpu(), size=tuple(pad_shape),
                          mode='nearest')[0, :, :img_shape[0], :img_shape[1]]
    gap = np.full((img_shape[0], SEPARATOR, 3), 255, dtype=np.uint8)
    parts = []
    for tile in tiles.numpy():
        parts += [_colormap(tile, 'viridis'), gap]
    return np.concatenate(parts[:-1], axis=1)


def _indices(dataset, num_images: int) -> List[int]:
    """The first ``num_images`` indices of each source of a MultiTaskDataset (else of
    ``dataset``)."""
    if hasattr(dataset, 'source_range'):
        return [i for s in range(len(dataset.datasets))
                for i in list(dataset.source_range(s))[:num_images]]
    return list(range(min(num_images, len(dataset))))


def draw_instances(image: np.ndarray, instances, dataset, task: str) -> np.ndarray:
    """``instances`` drawn by a :class:`TaskVisualizer` over ``image`` (RGB uint8), with the
    class names of the source of ``dataset`` that labels ``task``."""
    from .task_visualizer import TaskVisualizer  # it draws with this module's palette
    sources = getattr(dataset, 'metainfo', {}).get('sources', {})
    classes = next((s.get('classes') for s in sources.values() if task in s.get('tasks', ())),
                   None)
    visualizer = TaskVisualizer.get_instance('modzoo_show_dir', classes=classes)
    visualizer.classes = classes
    return visualizer.draw_instances(image, instances)


def _write(path: str, rgb: np.ndarray, written: list) -> None:
    mmcv.imwrite(np.ascontiguousarray(rgb[..., ::-1]), path)  # mmcv writes BGR
    written.append(path)


def show_dense_results(model, dataset, out_dir: str, num_images: int = 4) -> List[str]:
    """Save inputs, predictions, ground truth and gate maps of a few images of ``dataset``.

    For the first ``num_images`` images of each source, in ``out_dir/<source>_<image id>/``:
    ``input.png``; for every task of the image whose head has a ``pred_key`` (instances drawn by
    ``TaskVisualizer``):
    ``<task>_pred.png`` and ``<task>_gt.png``; for every TaskExpert gate that ran:
    ``<task>_gates_layer<l>.png`` (``render_gates``; the last tile is the memory).
    Returns the paths written.
    """
    model = getattr(model, 'module', model)  # unwrap DDP
    model.eval()
    gates = []
    hooks = [m.register_forward_hook(lambda gate, args, out: gates.append((gate, out)))
             for m in model.modules() if isinstance(m, TaskGate)]
    written = []
    try:
        for index in _indices(dataset, num_images):
            item = dataset[index]
            gates.clear()
            with torch.no_grad():
                sample = model.test_step(pseudo_collate([item]))[0]
            h, w = sample.img_shape[:2]
            stem = osp.splitext(osp.basename(sample.img_path))[0]
            folder = osp.join(out_dir, f"{sample.metainfo.get('source', 'data')}_{stem}")
            _write(osp.join(folder, 'input.png'),
                   item['inputs'].permute(1, 2, 0).numpy()[:h, :w], written)
            for task in sample.tasks:
                head = model.heads[task]
                if not hasattr(head, 'pred_key'):
                    continue
                gt, pred = sample.get(head.gt_key), sample.get(head.pred_key)
                field = head.gt_key[len('gt_'):]
                if field == 'instances':
                    image = item['inputs'].permute(1, 2, 0).numpy()[:h, :w]
                    for name, value in (('pred', pred), ('gt', gt)):
                        _write(osp.join(folder, f'{task}_{name}.png'),
                               draw_instances(image, value, dataset, task), written)
                    continue
                depth_max = float((pred if gt is None else gt).max()) if field == 'depth' \
                    else 1.0
                for name, value in (('pred', pred), ('gt', gt)):
                    if value is not None:
                        _write(osp.join(folder, f'{task}_{name}.png'),
                               render(field, value[..., :h, :w], depth_max), written)
            for gate, weights in gates:
                _write(osp.join(folder, f'{gate.task}_gates_layer{gate.layer}.png'),
                       render_gates(weights[0], sample.pad_shape, (h, w)), written)
    finally:
        for hook in hooks:
            hook.remove()
    return written
