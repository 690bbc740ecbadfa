"""Convert a timm ViT or BEiT state dict into the weights of a modzoo ``ViT`` backbone.

    python tools/model_converters/timm2modzoo.py SRC DST --img-size 64 --patch-size 8
        [--prefix backbone.] [--drop-rel-pos-bias]

SRC is anything ``modzoo.hub.resolve`` takes: a file, ``timm:ARCH.TAG`` (e.g.
``timm:vit_tiny_patch16_224.augreg_in21k_ft_in1k``), ``hf://ORG/REPO/FILE`` or a URL. DST
(``.pth`` or ``.safetensors``) holds the modzoo ViT keys (timm's ``VisionTransformer`` names)
behind ``--prefix``: with ``backbone.`` it loads into a whole model (``load_from``), without it
into the backbone (``init_cfg`` / ``pretrained``).

* ViT: the classifier (``head.*``) is dropped; ``fc_norm`` of mean-pooled models becomes the
  final ``norm`` when the model has none.
* BEiT: ``q_bias``/``v_bias`` become the qkv bias (the key bias is zero), and the layer scales
  ``gamma_1``/``gamma_2`` are folded into ``attn.proj`` and ``mlp.fc2`` (exact: gamma * (W x + b)
  = (gamma W) x + gamma b). A relative position bias has no counterpart in ViT: it is refused
  unless ``--drop-rel-pos-bias``, which drops it (and gives a zero position embedding when the
  model had no absolute one); such weights only suit fine-tuning.
* The patch embedding is resampled to ``--patch-size`` and the position embedding to the
  ``--img-size`` grid as timm's ``checkpoint_filter_fn`` does (bicubic, antialiased; the
  patch embedding by pseudo-inverse resize).
"""
import argparse
import logging
import re
import sys

import torch
from mmengine.logging import print_log
from timm.layers import resample_abs_pos_embed, resample_patch_embed

from modzoo.engine.checkpoint import save_checkpoint_atomic
from modzoo.hub import file_sha256
from modzoo.weights import load_state_dict, unwrap

BEIT_KEYS = re.compile(r'(\.q_bias|\.v_bias|\.gamma_[12]|relative_position_bias_table)$')
REL_POS_KEYS = re.compile(r'relative_position_(bias_table|index)$')


def is_beit(state_dict: dict) -> bool:
    return any(BEIT_KEYS.search(key) for key in state_dict)


def beit_to_vit(state_dict: dict, drop_rel_pos_bias: bool = False) -> dict:
    """BEiT keys -> ViT keys: q/v biases into ``attn.qkv.bias``, layer scales folded into
    ``attn.proj`` / ``mlp.fc2``, relative position bias refused or dropped."""
    rel_pos = sorted(key for key in state_dict if REL_POS_KEYS.search(key))
    if any(key.endswith('bias_table') for key in rel_pos) and not drop_rel_pos_bias:
        raise ValueError(f'the BEiT weights have a relative position bias ({rel_pos[0]}, ...), '
                         'which a ViT has no place for. Pass --drop-rel-pos-bias to drop it; '
                         'the converted ViT then differs from the BEiT and suits fine-tuning '
                         'only.')
    out = {key: value for key, value in state_dict.items()
           if not REL_POS_KEYS.search(key) and not BEIT_KEYS.search(key)}
    blocks = sorted({int(m.group(1)) for key in state_dict
                     for m in [re.match(r'blocks\.(\d+)\.', key)] if m})
    for i in blocks:
        p = f'blocks.{i}.'
        if p + 'attn.q_bias' in state_dict:
            q_bias, v_bias = state_dict[p + 'attn.q_bias'], state_dict[p + 'attn.v_bias']
            out[p + 'attn.qkv.bias'] = torch.cat((q_bias, torch.zeros_like(q_bias), v_bias))
        for gamma, layer in (('gamma_1', 'attn.proj'), ('gamma_2', 'mlp.fc2')):
            if p + gamma in state_dict:
                scale = state_dict[p + gamma]
                out[p + layer + '.weight'] = scale[:, None] * state_dict[p + layer + '.weight']
                out[p + layer + '.bias'] = scale * state_dict[p + layer + '.bias']
    if rel_pos:
        print_log(f'dropped the relative position bias ({len(rel_pos)} tensors)',
                  logger='current', level=logging.WARNING)
    return out


def convert(state_dict: dict, img_size: int, patch_size: int,
            drop_rel_pos_bias: bool = False) -> dict:
    """A timm ViT or BEiT state dict -> modzoo ``ViT(img_size, patch_size)`` keys (no prefix)."""
    state_dict = unwrap(state_dict)
    if 'patch_embed.proj.weight' not in state_dict or 'cls_token' not in state_dict:
        raise KeyError('expected a timm ViT/BEiT state dict with a class token (cls_token, '
                       f'patch_embed.proj.weight, blocks.*); got keys {list(state_dict)[:5]} ...')
    if 'reg_token' in state_dict:
        raise KeyError('register tokens (reg_token) are not supported by modzoo ViT')
    if is_beit(state_dict):
        state_dict = beit_to_vit(state_dict, drop_rel_pos_bias)
    out = {key: value for key, value in state_dict.items() if not key.startswith('head.')}
    if 'norm.weight' not in out and 'fc_norm.weight' in out:
        out['norm.weight'], out['norm.bias'] = out.pop('fc_norm.weight'), out.pop('fc_norm.bias')
    out['patch_embed.proj.weight'] = resample_patch_embed(
        out['patch_embed.proj.weight'], [patch_size, patch_size], interpolation='bicubic',
        antialias=True, verbose=False)
    grid = (img_size // patch_size, img_size // patch_size)
    embed_dim = out['cls_token'].shape[-1]
    if 'pos_embed' in out:
        out['pos_embed'] = resample_abs_pos_embed(out['pos_embed'], new_size=grid,
                                                  num_prefix_tokens=1, interpolation='bicubic',
                                                  antialias=True, verbose=False)
    else:  # a BEiT with a relative position bias only
        out['pos_embed'] = torch.zeros(1, 1 + grid[0] * grid[1], embed_dim)
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='timm ViT/BEiT weights: a file, timm:NAME, hf://... or URL')
    parser.add_argument('dst', help='output .pth or .safetensors file')
    parser.add_argument('--img-size', type=int, required=True,
                        help='img_size of the modzoo ViT (the position embedding grid)')
    parser.add_argument('--patch-size', type=int, required=True,
                        help='patch_size of the modzoo ViT')
    parser.add_argument('--prefix', default='', help="key prefix, e.g. 'backbone.'")
    parser.add_argument('--drop-rel-pos-bias', action='store_true',
                        help='convert BEiT weights although their relative position bias is lost')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.img_size % args.patch_size:
        sys.exit(f'error: --img-size {args.img_size} is not a multiple of --patch-size '
                 f'{args.patch_size}')
    source = load_state_dict(args.src)
    layout = 'BEiT' if is_beit(source) else 'ViT'
    state_dict = convert(source, args.img_size, args.patch_size, args.drop_rel_pos_bias)
    save_checkpoint_atomic({args.prefix + key: value.contiguous()
                            for key, value in state_dict.items()}, args.dst)
    depth = len({key.split('.')[1] for key in state_dict if key.startswith('blocks.')})
    print(f'{layout} weights -> modzoo ViT(arch=dict(embed_dim='
          f'{state_dict["cls_token"].shape[-1]}, depth={depth}, ...), img_size={args.img_size}, '
          f'patch_size={args.patch_size}); {len(state_dict)} tensors, prefix '
          f"'{args.prefix}'")
    print(f'sha256 {file_sha256(args.dst)}')
    print(args.dst)


if __name__ == '__main__':
    main()
