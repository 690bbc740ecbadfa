"""Export one task of a trained model to ONNX or a ``torch.export`` program.

    python tools/deploy/export.py CONFIG CKPT --task NAME --format onnx|exported-program
                                  --out FILE [--img-size H [W]] [--batch-size N] [--verify]

The file takes RGB images float [B, 3, H, W] in 0-255 (B dynamic, H and W those given,
default the config's backbone ``img_size``) and returns the task's prediction (see
``modzoo.deploy``). Works for dense, MoE (and extracted MoE, ``tools/extract.py`` output),
TaskExpert and MULTI-LANE models. With ``--verify`` the exported file is run (onnxruntime or
``torch.export.load``) on random images and compared with PyTorch; the maximum absolute
difference is printed in the JSON line that ends the output.
"""
import argparse
import json

import numpy as np
import torch

from modzoo.deploy import FORMATS, TaskPredictor, export_onnx, export_program
from modzoo.zoo import init_model


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Export one task of a modzoo model')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint (path, URL, hf://, zoo name)')
    parser.add_argument('--task', help='task to export (optional for one-task models and '
                                       'MULTI-LANE)')
    parser.add_argument('--format', choices=FORMATS, default='onnx')
    parser.add_argument('--out', required=True, help='output file (.onnx or .pt2)')
    parser.add_argument('--img-size', type=int, nargs='+',
                        help='H [W] of the exported input (default: the backbone img_size)')
    parser.add_argument('--batch-size', type=int, default=2, help='batch of the example input')
    parser.add_argument('--verify', action='store_true',
                        help='run the exported file and compare it with PyTorch')
    return parser.parse_args(argv)


def input_size(cfg, img_size):
    """(H, W) from ``--img-size`` or the config's backbone ``img_size``."""
    if img_size:
        return (img_size[0], img_size[-1])
    size = cfg.model.get('backbone', {}).get('img_size')
    if size is None:
        raise SystemExit(f'{cfg.filename}: model.backbone has no img_size; pass --img-size H W')
    return (size, size) if isinstance(size, int) else tuple(size)


def run_exported(path, fmt, images):
    """The exported file's output on ``images`` as a numpy array."""
    if fmt == 'onnx':
        import onnxruntime
        session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
        return session.run(None, {'images': images.numpy()})[0]
    with torch.no_grad():
        return torch.export.load(path).module()(images).numpy()


def main(argv=None):
    args = parse_args(argv)
    model = init_model(args.config, args.checkpoint)
    predictor = TaskPredictor(model, args.task)
    size = input_size(model.cfg, args.img_size)
    torch.manual_seed(0)
    images = torch.rand(args.batch_size, 3, *size) * 255
    if args.format == 'onnx':
        export_onnx(predictor, images, args.out)
    else:
        export_program(predictor, images, args.out)
    result = dict(out=args.out, format=args.format, task=predictor.task,
                  input=['B', 3, *size])
    if args.verify:
        check = torch.rand(args.batch_size + 1, 3, *size) * 255
        with torch.no_grad():
            expected = predictor(check).numpy()
        got = run_exported(args.out, args.format, check)
        result['max_abs_diff'] = float(np.abs(got.astype(np.float64) - expected).max())
    print(json.dumps(result))
    return result


if __name__ == '__main__':
    main()
