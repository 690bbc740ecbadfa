"""Plot training curves and validation metrics of a run from mmengine's scalar log.

    python tools/analysis/plot_curves.py WORK_DIR --keys loss_cls semseg/mIoU [--out curves.png]

WORK_DIR is a ``tools/train.py`` work dir (its newest ``<timestamp>/vis_data/scalars.json``
is read) or that file itself. Each key gets one panel over the iteration (``step``); training
keys are logged every ``LoggerHook`` interval, validation metrics after each evaluation. An
unknown key lists the keys the log has. (``configs/_base_/default_runtime.py`` shows how to
log to TensorBoard as well.)
"""
import argparse
import glob
import json
import os.path as osp

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402


def scalars_file(path: str) -> str:
    """``path`` itself, or the newest ``*/vis_data/scalars.json`` of the work dir ``path``."""
    if osp.isfile(path):
        return path
    files = glob.glob(osp.join(path, '*', 'vis_data', 'scalars.json'))
    if not files:
        raise FileNotFoundError(f'{path} holds no */vis_data/scalars.json: expected the work '
                                'dir of a tools/train.py run (LocalVisBackend writes it)')
    return max(files, key=osp.getmtime)


def read_curves(path: str, keys) -> dict:
    """``{key: ([step, ...], [value, ...])}`` of ``keys`` in the scalars file ``path``."""
    curves = {key: ([], []) for key in keys}
    seen = set()
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            seen.update(record)
            for key in keys:
                if key in record:
                    curves[key][0].append(record['step'])
                    curves[key][1].append(record[key])
    missing = [key for key in keys if not curves[key][0]]
    if missing:
        raise KeyError(f'{path} has no {missing}; it logs: '
                       f'{", ".join(sorted(seen - {"step", "iter", "epoch"}))}')
    return curves


def plot(curves: dict, out: str, title: str) -> None:
    fig, axes = plt.subplots(len(curves), 1, figsize=(6, 2.4 * len(curves)), squeeze=False,
                             sharex=True)
    for ax, (key, (steps, values)) in zip(axes[:, 0], curves.items()):
        ax.plot(steps, values, marker='o' if len(steps) < 20 else None)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel('iteration')
    axes[0, 0].set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work_dir', help='a work dir, or its vis_data/scalars.json')
    parser.add_argument('--keys', nargs='+', default=['loss'], help='scalars to plot')
    parser.add_argument('--out', default='curves.png', help='image file to write')
    args = parser.parse_args(argv)
    path = scalars_file(args.work_dir)
    plot(read_curves(path, args.keys), args.out, osp.basename(osp.normpath(args.work_dir)))
    print(f'{", ".join(args.keys)} of {path} plotted to {args.out}')


if __name__ == '__main__':
    main()
