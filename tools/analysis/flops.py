"""Parameters and GFLOPs of a config's model, per task.

    python tools/analysis/flops.py CONFIG [--img-size H W] [--json]

Prints the total parameters and, for every task, the active parameters (those one token of
the task uses: k of the E experts of each MoE layer, its own router rows and head) and the
GFLOPs (one multiply-add = one FLOP, as fvcore) of backbone + head for one image, counted
with fvcore and ``modzoo.analysis.FLOP_HANDLES`` (fused attention, routed experts only).
The default image size is the backbone's ``img_size``.
"""
import argparse
import json

from mmengine.config import Config

from modzoo.analysis import model_summary
from modzoo.registry import MODELS


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--img-size', type=int, nargs=2, metavar=('H', 'W'),
                        help="input size (default: the backbone's img_size)")
    parser.add_argument('--json', action='store_true', help='print JSON')
    return parser.parse_args()


def main():
    args = parse_args()
    model = MODELS.build(Config.fromfile(args.config).model)
    img_size = args.img_size or model.backbone.patch_embed.img_size
    summary = model_summary(model, img_size)
    if args.json:
        print(json.dumps(dict(summary, img_size=list(img_size))))
        return
    print(f'{args.config}: {summary["params"] / 1e6:.3f} M parameters in all; '
          f'input {img_size[0]}x{img_size[1]}')
    print(f'{"task":<16}{"active params (M)":>20}{"GFLOPs":>12}')
    for task, stats in summary['tasks'].items():
        print(f'{task:<16}{stats["active_params"] / 1e6:>20.3f}{stats["gflops"]:>12.4f}')


if __name__ == '__main__':
    main()
