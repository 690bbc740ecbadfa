"""Convert an official Chameleon checkpoint (``GitGyun/chameleon``) to modzoo's ``Chameleon``.

    python tools/model_converters/chameleon_official.py IN.pth OUT.pth [--verify] [--tol 1e-4]

IN holds ``state_dict`` with the official key names (``image_encoder.backbone.*``,
``label_encoder.backbone.*``, ``matching_module.*``, ``label_decoder.*``, optionally behind the
Lightning wrapper's ``model.``) and optionally ``config``. Every size is read from the weights
(widths, depths, bias sets, alpha rows, image size, images per sample, decoder widths) except
the attention head counts, which come from ``config`` (``image_encoder.num_heads`` is also in
the relative position table; ``label_encoder.num_heads`` and ``n_attn_heads`` default to the
official width / 64 and 16). OUT holds ``state_dict`` (modzoo key names, float32) and
``meta.model``, the config that builds the model: ``MODELS.build(meta['model'])``.

With ``--verify``, IN must also hold an episode (``X_S``, ``Y_S``, ``X_Q``, ``t_idx``,
``g_idx``) and the official output ``Y_Q_pred``; the converted model runs the episode, the
largest absolute difference is printed on the last line, and the exit status is 1 above
``--tol``.
"""
import math
import re
import sys

import torch

from modzoo.converters import converter_parser, write_converted
from modzoo.registry import MODELS
from modzoo.weights import load_from_local

EPISODE_KEYS = ('X_S', 'Y_S', 'X_Q', 't_idx', 'g_idx', 'Y_Q_pred')
IMG = 'image_encoder.backbone.'
LBL = 'label_encoder.backbone.'
RENAMES = [  # (official pattern, modzoo replacement), applied in order, first match wins
    (r'^image_encoder\.backbone\.(.*)$', r'image_encoder.\1'),
    (r'^label_encoder\.backbone\.(.*)$', r'label_encoder.\1'),
    (r'^matching_module\.matching\.(\d+)\.pre_ln_q\.(.*)$', r'matching.matching.\1.pre_ln.\2'),
    (r'^matching_module\.(.*)$', r'matching.\1'),
    (r'^label_decoder\.fusion_blocks\.(\d+)\.resConfUnit(\d)\.(.*)$',
     r'decoder.fusion_blocks.\1.residual\2.\3'),
    (r'^label_decoder\.head\.0\.(.*)$', r'decoder.head_conv1.\1'),
    (r'^label_decoder\.head\.2\.(.*)$', r'decoder.head_conv2.\1'),
    (r'^label_decoder\.head\.4\.(.*)$', r'decoder.head_out.\1'),
    (r'^label_decoder\.(.*)$', r'decoder.\1'),
]
# official keys with no modzoo counterpart: rebuilt buffers and the shared Q/K LayerNorm's
# second name (checked equal to pre_ln_q)
DROPPED = re.compile(r'.*(relative_position_index|\.pre_ln_k\..*)$')


def load_official(path):
    """Read IN; strip the Lightning ``model.`` prefix; keep only the model's weights."""
    data = load_from_local(path, map_location='cpu')
    if not isinstance(data, dict) or 'state_dict' not in data:
        raise KeyError(f"{path}: no 'state_dict'; expected an official Chameleon checkpoint "
                       "(a dict with 'state_dict' and optionally 'config')")
    state_dict = {k[len('model.'):] if k.startswith('model.') else k: v
                  for k, v in data['state_dict'].items()}
    state_dict = {k: v for k, v in state_dict.items()
                  if k.startswith(('image_encoder.', 'label_encoder.', 'matching_module.',
                                   'label_decoder.'))}
    needed = [IMG + 'cls_token', IMG + 'patch_embed.proj.weight',
              IMG + 'blocks.0.attn.relative_position_bias_table', LBL + 'pos_embed',
              LBL + 'patch_embed.proj.weight', 'matching_module.alpha.0',
              'label_decoder.projectors.0.weight']
    missing = [k for k in needed if k not in state_dict]
    if missing:
        raise KeyError(f'{path}: state_dict lacks {missing}; expected the official Chameleon '
                       'key names (image_encoder.backbone.*, label_encoder.backbone.*, '
                       'matching_module.*, label_decoder.*)')
    data['state_dict'] = state_dict
    return data


def _depth(state_dict, prefix):
    return len({k[len(prefix):].split('.')[1] for k in state_dict
                if k.startswith(prefix + 'blocks.')})


def _window(table_rows, grid_from_index):
    """(images, h, w) of a relative position table (square grid unless the index says)."""
    for images in range(1, 9):
        plane = (table_rows - 3) / (2 * images - 1)
        if grid_from_index is not None:
            h, w = grid_from_index
            if (2 * h - 1) * (2 * w - 1) == plane:
                return images, h, w
            continue
        span = math.isqrt(int(plane))
        if span * span == plane and span % 2 == 1:
            return images, (span + 1) // 2, (span + 1) // 2
    raise ValueError(f'a relative position table of {table_rows} rows fits no window')


def model_cfg(state_dict, config):
    """The modzoo ``Chameleon`` config of the official weights (sizes from the weights,
    head counts from ``config``)."""
    img_cfg = config.get('image_encoder') if isinstance(config.get('image_encoder'), dict) else {}
    lbl_cfg = config.get('label_encoder') if isinstance(config.get('label_encoder'), dict) else {}
    sd = state_dict
    dim, patch = sd[IMG + 'cls_token'].shape[-1], sd[IMG + 'patch_embed.proj.weight'].shape[-1]
    depth = _depth(sd, IMG)
    table = sd[IMG + 'blocks.0.attn.relative_position_bias_table']
    q_bias = sd[IMG + 'blocks.0.attn.q_bias']
    img_size = img_cfg.get('img_size')
    grid = None if img_size is None else (
        (img_size // patch,) * 2 if isinstance(img_size, int) else
        tuple(s // patch for s in img_size))
    images, gh, gw = _window(table.shape[0], grid)
    lbl_dim = sd[LBL + 'pos_embed'].shape[-1]
    lbl_patch = sd[LBL + 'patch_embed.proj.weight'].shape[-1]
    lbl_depth = _depth(sd, LBL)
    lbl_tokens = sd[LBL + 'pos_embed'].shape[1] - 1
    if lbl_tokens != gh * gw:
        raise ValueError(f'label encoder pos_embed has {lbl_tokens} patch tokens but the image '
                         f'encoder grid is {gh}x{gw}')
    n_alphas = sd['matching_module.alpha.0'].shape[0]
    n_tasks = q_bias.shape[0] if q_bias.ndim == 2 else 0
    if img_cfg.get('num_heads', table.shape[1]) != table.shape[1]:
        raise ValueError(f"config image_encoder.num_heads={img_cfg['num_heads']} but the "
                         f'relative position tables have {table.shape[1]} heads')
    default_blocks = [level * (depth // 4) - 1 for level in range(1, 5)]
    default_lbl_blocks = [level * (lbl_depth // 4) - 1 for level in range(1, 5)]
    separate = bool(config.get('separate_alpha', False))
    return dict(
        type='Chameleon',
        n_tasks=n_tasks, n_task_groups=n_alphas if not separate else 1, separate_alpha=separate,
        image_encoder=dict(
            type='BiasSetBEiT',
            arch=dict(embed_dim=dim, depth=depth, num_heads=table.shape[1],
                      mlp_ratio=sd[IMG + 'blocks.0.mlp.fc1.weight'].shape[0] / dim),
            img_size=(gh * patch, gw * patch), patch_size=patch,
            in_channels=sd[IMG + 'patch_embed.proj.weight'].shape[1], n_input_images=images,
            out_indices=list(config.get('feature_blocks', default_blocks)),
            init_values=float(sd[IMG + 'blocks.0.gamma_1'].flatten()[0]) or 1e-5),
        label_encoder=dict(
            type='ViT',
            arch=dict(embed_dim=lbl_dim, depth=lbl_depth,
                      num_heads=lbl_cfg.get('num_heads', lbl_dim // 64),
                      mlp_ratio=sd[LBL + 'blocks.0.mlp.fc1.weight'].shape[0] / lbl_dim),
            img_size=(gh * lbl_patch, gw * lbl_patch), patch_size=lbl_patch,
            out_indices=list(config.get('label_feature_blocks', default_lbl_blocks)),
            final_norm=False),
        matching=dict(type='TokenMatching', num_heads=config.get('n_attn_heads', 16),
                      alpha_temp=config.get('matching_alpha_temp', 0.05)),
        decoder=dict(
            type='DPTLabelDecoder',
            hidden_channels=[sd[f'label_decoder.resamplers.{i}.0.weight'].shape[0]
                             for i in range(4)],
            features=sd['label_decoder.projectors.0.weight'].shape[0],
            out_channels=sd['label_decoder.head.4.weight'].shape[0]))


def convert_state_dict(state_dict):
    """Official keys -> modzoo keys; float32 tensors."""
    out = {}
    for key, value in state_dict.items():
        if DROPPED.match(key):
            continue
        for pattern, repl in RENAMES:
            new, n = re.subn(pattern, repl, key)
            if n:
                out[new] = value.float()
                break
    for key in state_dict:
        if '.pre_ln_k.' in key and not torch.equal(
                state_dict[key], state_dict[key.replace('.pre_ln_k.', '.pre_ln_q.')]):
            raise ValueError(f'{key} differs from its pre_ln_q twin; the official model shares '
                             'one LayerNorm for Q and K')
    return out


def build_converted(data, path):
    """IN's contents -> (model in eval with the converted weights, its config)."""
    try:
        cfg = model_cfg(data['state_dict'], data.get('config') or {})
        model = MODELS.build(cfg)
        converted = convert_state_dict(data['state_dict'])
        # the official label encoder has no final norm: modzoo's ViT keeps its (unused) one
        for key in ('label_encoder.norm.weight', 'label_encoder.norm.bias'):
            converted[key] = model.state_dict()[key]
        model.load_state_dict(converted)
    except (ValueError, RuntimeError) as err:      # what the config and weights disagree on
        raise type(err)(f'{path}: {err}') from err
    return model.eval(), cfg


def verify(model, data, path):
    """Run IN's episode -> {'Y_Q_pred': the largest absolute difference from the official
    output}."""
    missing = [k for k in EPISODE_KEYS if k not in data]
    if missing:
        raise KeyError(f'{path}: --verify needs {missing} (an episode and the official output)')
    with torch.no_grad():
        pred = model.forward_episode(data['X_S'].float(), data['Y_S'].float(),
                                     data['X_Q'].float(), data['t_idx'], data['g_idx'])
    return {'Y_Q_pred': (pred - data['Y_Q_pred']).abs().max().item()}


def main(argv=None):
    args = converter_parser(
        __doc__.split('\n\n')[0], 'official Chameleon file (state_dict, optionally config)',
        'compare with the official output stored in SRC').parse_args(argv)
    data = load_official(args.src)
    model, cfg = build_converted(data, args.src)
    diffs = verify(model, data, args.src) if args.verify else None
    return write_converted(model, cfg, args.dst, diffs, args.tol)


if __name__ == '__main__':
    sys.exit(main())
