"""Publish a training checkpoint: weights only, named by date and hash, in both formats.

    python tools/model_converters/publish_model.py CKPT NAME [--out-dir DIR]
        [--config CONFIG] [--base-url URL] [--date YYYYMMDD]

Keeps ``state_dict`` and the ``meta`` that describes the model (``cfg``, ``dataset_meta``,
``mmengine_version``); drops the optimizer, the schedulers, the message hub and the run's
counters. Writes ``{NAME}_{YYYYMMDD}-{sha256[:8]}.pth`` (``torch.save``) and
``..-{sha256[:8]}.safetensors`` (the state dict only), each named by its own hash, so that
``modzoo.hub`` verifies them from the name alone. With ``--config`` the weights are first
loaded strictly into the model the config builds (a mismatch fails, listing the keys) and the
parameter count goes into the printed metafile entry.
"""
import argparse
import hashlib
import io
import os
import os.path as osp
import time

import safetensors.torch
import torch
import yaml
from mmengine.config import Config

from modzoo.engine.checkpoint import write_atomic
from modzoo.hub import file_sha256
from modzoo.registry import MODELS
from modzoo.weights import load_from_local, load_weights, unwrap

META_KEYS = ('cfg', 'dataset_meta', 'mmengine_version')


def strip(checkpoint: dict) -> dict:
    """``{'state_dict', 'meta'}`` of a training checkpoint (or of a bare state dict)."""
    meta = checkpoint.get('meta') if isinstance(checkpoint.get('meta'), dict) else {}
    return dict(state_dict=unwrap(checkpoint),
                meta={key: value for key, value in meta.items() if key in META_KEYS})


def write_named(data: bytes, out_dir: str, stem: str, ext: str) -> str:
    """Write ``data`` as ``{stem}-{sha256[:8]}{ext}`` in ``out_dir``; return the path."""
    path = osp.join(out_dir, f'{stem}-{hashlib.sha256(data).hexdigest()[:8]}{ext}')
    write_atomic(path, data)
    return path


def publish(ckpt: str, name: str, out_dir: str, date: str) -> tuple:
    """Write the stripped ``.pth`` and ``.safetensors`` of ``ckpt``; return both paths."""
    published = strip(load_from_local(ckpt, map_location='cpu'))
    state_dict = {key: value.contiguous() for key, value in published['state_dict'].items()}
    stem = f'{name}_{date}'
    with io.BytesIO() as buffer:
        torch.save(dict(state_dict=state_dict, meta=published['meta']), buffer)
        pth = write_named(buffer.getvalue(), out_dir, stem, '.pth')
    tensors = safetensors.torch.save(state_dict, metadata={'modzoo_name': name})
    return pth, write_named(tensors, out_dir, stem, '.safetensors')


def metafile_entry(name: str, weights_url: str, sha256: str, config: str = None,
                   parameters: int = None) -> str:
    """The YAML of the ``Models`` entry for the published weights."""
    entry = dict(Name=name)
    if config:
        entry['Config'] = config
    if parameters:
        entry['Metadata'] = dict(Parameters=parameters)
    entry.update(Weights=weights_url, Sha256=sha256)
    return yaml.safe_dump([entry], sort_keys=False)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('ckpt', help='checkpoint written by training (or a bare state dict)')
    parser.add_argument('name', help='model name, e.g. vit-tiny_synth_mtl')
    parser.add_argument('--out-dir', default='.', help='where the files go')
    parser.add_argument('--config', help='check the weights against the model of this config')
    parser.add_argument('--base-url', default='https://REPLACE-ME',
                        help='URL folder the files will be uploaded to (for the entry)')
    parser.add_argument('--date', default=time.strftime('%Y%m%d'), help='YYYYMMDD (default: today)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    parameters = None
    if args.config:
        model = MODELS.build(Config.fromfile(args.config).model)
        load_weights(model, args.ckpt, strict=True)
        parameters = sum(p.numel() for p in model.parameters())
    os.makedirs(args.out_dir, exist_ok=True)
    pth, safetensors_path = publish(args.ckpt, args.name, args.out_dir, args.date)
    for path in (pth, safetensors_path):
        print(f'{path}  sha256 {file_sha256(path)}')
    print('\nmetafile entry (configs/<family>/metafile.yml, Models:):')
    print(metafile_entry(args.name, f'{args.base_url.rstrip("/")}/'
                         f'{osp.basename(safetensors_path)}', file_sha256(safetensors_path),
                         args.config, parameters))


if __name__ == '__main__':
    main()
