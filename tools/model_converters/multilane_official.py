"""Convert an official MULTI-LANE checkpoint (``tdemin16/multi-lane``) to modzoo's ``MultiLane``.

    python tools/model_converters/multilane_official.py IN.pth OUT.pth [--verify] [--tol 1e-4]

IN holds ``state_dict`` (official key names), ``config`` (the official arguments: num_tasks,
t, num_selectors, num_prompts, num_prompt_layers, normalize, head_mode, num_classes,
drop_and_replace, optionally model) and ``class_mask`` (class indices of each task). The ViT
size is read from the weights. OUT holds ``state_dict`` (modzoo key names, float32) and
``meta.model``, the config that builds the model: ``MODELS.build(meta['model'])``.

With ``--verify``, IN must also hold ``input`` [B, 3, H, W] and the official ``logits``
[B, C] (optionally ``pathway_cls`` [B, T, D]); the converted model runs the input, the
largest absolute differences are printed, and the exit status is 1 above ``--tol``.
"""
import math
import re
import sys

import timm
import torch
import torch.nn.functional as F

import modzoo.heads.pathway_head  # noqa: F401 (registers PathwayHead)
import modzoo.models.backbones.prompted_vit  # noqa: F401 (registers MultiLaneViT)
import modzoo.models.multilane  # noqa: F401 (registers MultiLane)
from modzoo.converters import converter_parser, write_converted
from modzoo.registry import MODELS
from modzoo.weights import load_from_local

PROMPT_KEY = re.compile(r'blocks\.(\d+)\.attn\.prompts')
CONFIG_KEYS = ('num_tasks', 't', 'num_selectors', 'num_prompts', 'num_prompt_layers',
               'normalize', 'head_mode', 'num_classes')
WEIGHT_KEYS = ('cls_token', 'pos_embed', 'patch_embed.proj.weight', 'blocks.0.mlp.fc1.weight',
               'selectors', 'head.weight')


def load_official(path):
    """Read IN and check that it has what the conversion needs."""
    data = load_from_local(path, map_location='cpu')
    missing = [k for k in ('state_dict', 'config', 'class_mask') if k not in data]
    if missing:
        raise KeyError(f'{path}: missing {missing}; expected an official MULTI-LANE dump with '
                       "'state_dict', 'config' and 'class_mask'")
    missing = [k for k in CONFIG_KEYS if k not in data['config']]
    if missing:
        raise KeyError(f"{path}: config lacks {missing}; expected the official arguments "
                       f'{list(CONFIG_KEYS)}')
    missing = [k for k in WEIGHT_KEYS if k not in data['state_dict']]
    if missing:
        raise KeyError(f'{path}: state_dict lacks {missing}; expected the official '
                       'MULTI-LANE key names')
    return data


def vit_cfg_from_weights(state_dict, arch_known):
    """The timm ViT sizes the official weights were made with."""
    embed_dim = state_dict['cls_token'].shape[-1]
    depth = len({k.split('.')[1] for k in state_dict if k.startswith('blocks.')})
    _, in_chans, patch, _ = state_dict['patch_embed.proj.weight'].shape
    grid = math.isqrt(state_dict['pos_embed'].shape[1] - 1)
    cfg = dict(embed_dim=embed_dim, depth=depth, patch_size=patch, in_chans=in_chans,
               img_size=grid * patch,
               mlp_ratio=state_dict['blocks.0.mlp.fc1.weight'].shape[0] / embed_dim,
               qkv_bias='blocks.0.attn.qkv.bias' in state_dict)
    prompts = [v for k, v in state_dict.items() if PROMPT_KEY.fullmatch(k)]
    if prompts:
        cfg['num_heads'] = prompts[0].shape[3]
    elif not arch_known:
        raise ValueError('cannot tell the number of attention heads: the weights hold no '
                         "prompts and config['model'] is not a timm model name")
    return cfg


def model_cfg(config, class_mask, state_dict):
    """The modzoo ``MultiLane`` config equivalent to the official arguments."""
    if config.get('tome', 0):
        raise ValueError(f"config['tome']={config['tome']}: the ToMe ablation is not supported")
    arch = config.get('model', '')
    arch_known = timm.is_model(arch)
    num_prompt_layers = sum(bool(PROMPT_KEY.fullmatch(k)) for k in state_dict)
    if num_prompt_layers != config['num_prompt_layers']:
        raise ValueError(f"config['num_prompt_layers']={config['num_prompt_layers']} but the "
                         f'weights hold prompts in {num_prompt_layers} blocks')
    return dict(
        type='MultiLane',
        backbone=dict(
            type='MultiLaneViT', arch=arch if arch_known else 'vit_base_patch16_224',
            vit_cfg=vit_cfg_from_weights(state_dict, arch_known),
            num_tasks=config['num_tasks'], num_selectors=config['num_selectors'],
            num_prompts=config['num_prompts'], num_prompt_layers=num_prompt_layers,
            drop_and_replace=config.get('drop_and_replace', not config.get('disable_dandr'))),
        head=dict(
            type='PathwayHead', num_classes=config['num_classes'],
            class_mask=[list(map(int, c)) for c in class_mask], mode=config['head_mode'],
            # Only the string 'pre-head' switches normalisation on: before commit 088cce2
            # the configs set normalize=True, which the model treats as off.
            normalize=config['normalize'] == 'pre-head'))


def convert_state_dict(state_dict, task_id):
    """Official keys -> modzoo keys; float32 tensors."""
    out = {}
    for key, value in state_dict.items():
        prompt = PROMPT_KEY.fullmatch(key)
        if key == 'selectors':
            key = 'backbone.selectors.tokens'
        elif prompt:
            key = f'backbone.prompts.{prompt[1]}.kv'
        elif key.startswith('head.'):
            key = 'head.fc.' + key[len('head.'):]
        elif key == 'task_identifier.keys':
            key = 'head.keys'
        else:
            key = 'backbone.vit.' + key
        out[key] = value.float()
    out['backbone.task_id'] = torch.tensor(task_id)
    return out


def build_converted(data, path):
    """IN's contents -> (model with the converted weights loaded strictly, its config)."""
    try:
        cfg = model_cfg(data['config'], data['class_mask'], data['state_dict'])
        model = MODELS.build(cfg)
        model.load_state_dict(convert_state_dict(data['state_dict'], data['config']['t']))
    except (ValueError, RuntimeError) as err:      # what the config and weights disagree on
        raise type(err)(f'{path}: {err}') from err
    return model.eval(), cfg


def verify(model, data, path):
    """Run IN's input -> {output name: largest absolute difference from the official one}."""
    missing = [k for k in ('input', 'logits') if k not in data]
    if missing:
        raise KeyError(f'{path}: --verify needs {missing} (the input and the official logits)')
    with torch.no_grad():
        diffs = {'logits': (model(data['input']) - data['logits']).abs().max().item()}
        if 'pathway_cls' in data:                         # [B, T, D], what feeds the head
            pathways = model.forward_pathways(data['input'])
            if model.head.normalize:
                pathways = F.normalize(pathways, dim=-1)
            diffs['pathway_cls'] = (pathways - data['pathway_cls']).abs().max().item()
    return diffs


def main(argv=None):
    args = converter_parser(
        __doc__.split('\n\n')[0], 'official MULTI-LANE file (state_dict, config, class_mask)',
        'compare with the official outputs stored in SRC').parse_args(argv)
    data = load_official(args.src)
    model, cfg = build_converted(data, args.src)
    diffs = verify(model, data, args.src) if args.verify else None
    return write_converted(model, cfg, args.dst, diffs, args.tol)


if __name__ == '__main__':
    sys.exit(main())
