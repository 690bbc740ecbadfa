"""Render SynthScenes and write it in every dataset format.

``python tools/make_synth_data.py --out data/synth --num-train 2000 --num-val 400 --size 64
--seed 0 [--workers W]``. Two runs with the same arguments write byte-identical files.
"""
import argparse
import time

from modzoo.datasets.synth import generate_synth_scenes


def parse_args():
    parser = argparse.ArgumentParser(description='Generate the SynthScenes datasets')
    parser.add_argument('--out', default='data/synth',
                        help='output folder: missing or empty (else see --overwrite)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace a non-empty --out once the new set is complete')
    parser.add_argument('--num-train', type=int, default=2000, help='training images')
    parser.add_argument('--num-val', type=int, default=400, help='validation images')
    parser.add_argument('--size', type=int, default=64, help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--workers', type=int, default=None,
                        help='processes (default: all CPUs; 0 or 1: no pool)')
    return parser.parse_args()


def main():
    args = parse_args()
    start = time.perf_counter()
    out = generate_synth_scenes(args.out, num_train=args.num_train, num_val=args.num_val,
                                size=args.size, seed=args.seed, workers=args.workers,
                                overwrite=args.overwrite)
    print(f'SynthScenes: {args.num_train} train + {args.num_val} val images of {args.size} px '
          f'written to {out} in {time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
    main()
