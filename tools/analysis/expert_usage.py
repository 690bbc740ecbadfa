"""Draw how each task uses the experts of every MoE layer: a tasks x experts heatmap per layer.

    python tools/analysis/expert_usage.py WORK_DIR_OR_CKPT [--phase test] [--out DIR]

WORK_DIR_OR_CKPT is a work dir (its ``expert_usage_<phase>.json`` of ``ExpertUsageHook``;
default phase: the first of test, val, train that exists), such a JSON file, or a
checkpoint (the routers' ``usage`` buffers it saved: the counts of the whole run; task names
from the config stored in the checkpoint). Each cell is the share of the task's routing
choices that went to the expert, in percent (a row sums to 100). Writes one PNG per layer
and ``expert_usage.png`` with all layers to ``--out`` (default: ``<work dir>/expert_usage``).
"""
import argparse
import io
import json
import math
import os.path as osp

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from mmengine.config import Config  # noqa: E402

from modzoo.engine import load_from_local, write_atomic  # noqa: E402

PHASES = ('test', 'val', 'train')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('source', help='work dir, expert_usage_*.json or checkpoint')
    parser.add_argument('--phase', choices=PHASES, help='which JSON of a work dir to draw')
    parser.add_argument('--out', help='output folder (default: <work dir>/expert_usage)')
    return parser.parse_args()


def load_usage(source: str, phase=None):
    """(``{layer: dict(tasks, top_k, counts [T][E])}``, title) from a work dir, JSON or
    checkpoint."""
    if osp.isdir(source):
        names = [f'expert_usage_{p}.json' for p in ([phase] if phase else PHASES)]
        found = [osp.join(source, n) for n in names if osp.isfile(osp.join(source, n))]
        if not found:
            raise FileNotFoundError(f'{source} has none of {names}: train or test with '
                                    "custom_hooks=[dict(type='ExpertUsageHook')]")
        source = found[0]
    if source.endswith('.json'):
        with open(source) as f:
            report = json.load(f)
        return report['layers'], f"{report['phase']} phase"
    ckpt = load_from_local(source, map_location='cpu')
    state = ckpt.get('state_dict', ckpt)
    tasks = _checkpoint_tasks(ckpt)
    layers = {}
    for key, counts in state.items():
        if key.endswith('.router.usage'):
            num_tasks = counts.shape[0]
            layers[key[:-len('.router.usage')]] = dict(
                tasks=tasks if len(tasks) == num_tasks else [str(t) for t in range(num_tasks)],
                top_k=None, counts=counts.tolist())
    if not layers:
        raise KeyError(f'{source} has no router usage buffers (*.router.usage): not a MoE model')
    return layers, 'checkpoint (whole run)'


def _checkpoint_tasks(ckpt: dict) -> list:
    """The backbone task names of the config mmengine stores in a checkpoint's meta."""
    text = ckpt.get('meta', {}).get('cfg')
    if not text:
        return []
    backbone = Config.fromstring(text, '.py').model.get('backbone', {})
    return list(backbone.get('tasks', []))


def shares(counts) -> np.ndarray:
    """Percent of each task's routing choices per expert, [T, E] (rows of 0 stay 0)."""
    counts = np.asarray(counts, dtype=np.float64)
    return 100 * counts / np.maximum(counts.sum(1, keepdims=True), 1)


def draw(ax, name: str, layer: dict):
    values = shares(layer['counts'])
    image = ax.imshow(values, cmap='viridis', vmin=0, aspect='auto')
    ax.set_title(name, fontsize=8)
    ax.set_yticks(range(len(layer['tasks'])), layer['tasks'], fontsize=7)
    ax.set_xticks(range(values.shape[1]), range(values.shape[1]), fontsize=6)
    ax.set_xlabel('expert', fontsize=7)
    return image


def save(fig, path: str):
    with io.BytesIO() as buffer:
        fig.savefig(buffer, format='png', dpi=120, bbox_inches='tight')
        write_atomic(path, buffer.getvalue())
    plt.close(fig)


def main():
    args = parse_args()
    layers, title = load_usage(args.source, args.phase)
    out = args.out or osp.join(args.source if osp.isdir(args.source)
                               else osp.dirname(osp.abspath(args.source)), 'expert_usage')
    for name, layer in layers.items():
        fig, ax = plt.subplots(figsize=(1.5 + 0.35 * len(layer['counts'][0]), 2.5),
                               layout='constrained')
        fig.colorbar(draw(ax, name, layer), ax=ax, label='% of the task\'s choices')
        save(fig, osp.join(out, f'{name}.png'))
    cols = min(4, len(layers))
    rows = math.ceil(len(layers) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.4 * rows), squeeze=False,
                             layout='constrained')
    for ax, (name, layer) in zip(axes.flat, layers.items()):
        fig.colorbar(draw(ax, name, layer), ax=ax)
    for ax in list(axes.flat)[len(layers):]:
        ax.axis('off')
    fig.suptitle(f'expert usage per task, % of routing choices: {title}')
    save(fig, osp.join(out, 'expert_usage.png'))
    print(f'{len(layers)} layer heatmaps and expert_usage.png written to {out}')


if __name__ == '__main__':
    main()
