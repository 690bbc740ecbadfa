"""Convert an official Mod-Squad checkpoint (``UMass-Foundation-Model/Mod-Squad``,
``MTVisionTransformerMoETaskGating``) to a modzoo ``MultiTaskModel`` (``MoEViT`` + heads).

    python tools/model_converters/modsquad_official.py IN.pth OUT.pth [--verify] [--tol 1e-5]
        [--preset NAME] [--tasks TASK ...]

IN holds the official state dict (official key names: ``blocks.0.attn.q_proj.experts.w``,
``blocks.1.mlp.f_gate.<t>.0.weight``, ``task_embedding`` ...) alone or under one of the keys
:func:`modzoo.weights.unwrap` reads (``model``, as the official training checkpoints have it,
or ``state_dict``; EMA weights first where both are present). The constructor arguments come from
IN's ``config`` (official argument names, ``tasks`` and ``norm_eps``, as the fixture in
``shared/fixtures`` has them), else from ``--preset`` (an official factory function name)
and ``--tasks`` (default: the official Taskonomy list of ``main_mt.py``). OUT holds
``state_dict`` (modzoo key names, float32) and ``meta.model``, the config that builds the
model: ``MODELS.build(meta['model'])``.

Every task keeps its router and task-embedding row; the heads of the tasks modzoo has a head
for are converted (``class_*``: ``ClsHead(pre_norm=True)``; ``depth_*``, ``normal``,
``segment_semantic``: the dense heads with the official per-token linear decoder,
``unpatchify=16``), the others are listed and left out.

With ``--verify``, IN must also hold ``input`` [B, 3, H, W] and the official per-task
``features`` and ``outputs``; the converted model runs the input, the largest absolute
difference per task is printed, the overall largest last, and the exit status is 1 above
``--tol``.
"""
import re
import sys

import torch

import modzoo.heads  # noqa: F401 (registers the heads)
import modzoo.models  # noqa: F401 (registers MultiTaskModel and MoEViT)
from modzoo.converters import converter_parser, write_converted
from modzoo.registry import MODELS
from modzoo.weights import STATE_DICT_KEYS, load_from_local, unwrap

# The official task list (main_mt.py, 'rgb' is the input and has no head).
TASKONOMY = ['class_object', 'class_scene', 'depth_euclidean', 'depth_zbuffer',
             'edge_occlusion', 'edge_texture', 'keypoints2d', 'keypoints3d', 'normal',
             'principal_curvature', 'reshading', 'segment_unsup2d', 'segment_unsup25d']
# MTVisionTransformerMoETaskGating's defaults, and those of the timm ViT it extends.
DEFAULTS = dict(img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12,
                mlp_ratio=4., qkv_bias=True, drop_path_rate=0., num_attn_experts=48,
                head_dim=None, num_ffd_experts=16, ffd_heads=2, ffd_noise=True, switchloss=0.01,
                zloss=0.001, w_MI=0., noisy_gating=True, twice_mlp=False, twice_attn=False,
                norm_eps=1e-6, prob_eps=1e-4)
_SMALL = dict(embed_dim=384, depth=12, num_heads=6, head_dim=128)
_MI = dict(switchloss=0.0, zloss=0.0, noisy_gating=False, ffd_noise=False)
# models_mt.py factory functions (the MTVisionTransformerMoETaskGating ones with MI).
PRESETS = {
    'mtvit_taskgate_att_mlp_small_MI_twice': dict(
        **_SMALL, **_MI, num_attn_experts=15, num_ffd_experts=16, ffd_heads=4, w_MI=0.005,
        twice_mlp=True, twice_attn=True),
    'mtvit_taskgate_att_mlp_base_MI_twice': dict(
        embed_dim=768, depth=12, num_heads=12, head_dim=128, **_MI, num_attn_experts=24,
        num_ffd_experts=16, ffd_heads=4, w_MI=0.005, twice_mlp=True, twice_attn=True),
    'mtvit_taskgate_small_att_MI': dict(
        **_SMALL, **_MI, num_attn_experts=15, num_ffd_experts=1, ffd_heads=1, w_MI=0.0005),
    'mtvit_taskgate_mlp16E4_small_MI': dict(
        **_SMALL, **_MI, num_attn_experts=6, num_ffd_experts=16, ffd_heads=4, w_MI=0.03),
}
# official task -> (modzoo head type, its arguments); channels as the official heads
HEADS = {'depth_euclidean': ('DepthHead', {}), 'depth_zbuffer': ('DepthHead', {}),
         'normal': ('NormalHead', {}), 'segment_semantic': ('SemSegHead', dict(num_classes=18))}
GATE_KEY = re.compile(r'(blocks\.\d+\.(?:attn\.q_proj|mlp))\.f_gate\.(\d+)\.0\.weight')
BLOCK_KEY = re.compile(r'blocks\.(\d+)\.(.+)')
HEAD_KEY = re.compile(r'task_heads\.(\d+)\.(\d)\.(weight|bias)')
# official -> modzoo names inside a MoE layer
EXPERT_KEYS = {'attn.q_proj.experts.w': 'attn.q_weight',
               'attn.q_proj.output_experts.w': 'attn.out_weight',
               'attn.kv_proj.0.weight': 'attn.kv.weight', 'attn.kv_proj.0.bias': 'attn.kv.bias',
               'mlp.experts.w': 'mlp.fc1_weight', 'mlp.experts.b': 'mlp.fc1_bias',
               'mlp.output_experts.w': 'mlp.fc2_weight', 'mlp.output_experts.b': 'mlp.fc2_bias'}


def load_official(path, preset=None, tasks=None):
    """(official state dict, full constructor config) of IN."""
    data = load_from_local(path, map_location='cpu')
    state = unwrap(data, path)
    if 'task_embedding' not in state:
        raise KeyError(f"{path}: expected an official Mod-Squad state dict (with "
                       f"'task_embedding'), alone or under one of {list(STATE_DICT_KEYS)}")
    if 'config' in data:
        config = dict(data['config'])
    elif preset in PRESETS:
        config = dict(PRESETS[preset], tasks=list(tasks or TASKONOMY))
    else:
        raise KeyError(f"{path} has no 'config': name the official factory with --preset, "
                       f'one of {sorted(PRESETS)}')
    unknown = set(config) - set(DEFAULTS) - {'tasks', 'drop_rate', 'attn_drop_rate'}
    if unknown:
        raise ValueError(f'{path}: config has arguments {sorted(unknown)} this converter does '
                         f'not know; known: {sorted(DEFAULTS)}')
    config = {**DEFAULTS, **config}
    if state['task_embedding'].shape[1] != len(config['tasks']):
        raise ValueError(f"{path}: task_embedding holds {state['task_embedding'].shape[1]} "
                         f"tasks but the config lists {len(config['tasks'])}: {config['tasks']}")
    return data, {k: v.float() for k, v in state.items()}, config


def model_cfg(c):
    """The modzoo MultiTaskModel config that computes what the official model does."""
    dims, depth, heads = c['embed_dim'], c['depth'], c['num_heads']
    moa = [i for i in range(depth) if not c['twice_attn'] or i % 2 == 0]
    mlp = [i for i in range(depth) if not c['twice_mlp'] or i % 2 == 1]
    noisy = {c['noisy_gating']} if moa else set()
    noisy |= {c['ffd_noise']} if mlp else set()
    problems = []
    if len(noisy) > 1:
        problems.append(f"noisy_gating={c['noisy_gating']} with ffd_noise={c['ffd_noise']} "
                        '(MoEViT has one noisy_gating for both kinds of layers)')
    if moa and c['num_attn_experts'] < heads:
        problems.append(f"num_attn_experts={c['num_attn_experts']} < num_heads={heads}")
    if not c['qkv_bias']:
        problems.append('qkv_bias=False (the official kv_proj keeps its bias, MoEViT drops it)')
    if abs(c['norm_eps'] - 1e-6) > 1e-12:
        problems.append(f"norm_eps={c['norm_eps']} (MoEViT's LayerNorms use timm's 1e-6)")
    if problems:
        raise ValueError('cannot convert: ' + '; '.join(problems))
    top_k = min(c['ffd_heads'], c['num_ffd_experts'])
    backbone = dict(
        type='MoEViT', tasks=list(c['tasks']), img_size=c['img_size'],
        patch_size=c['patch_size'], qkv_bias=True, drop_path_rate=c['drop_path_rate'],
        # the official dense MLPs are 4D wide whatever mlp_ratio (it sizes the experts)
        arch=dict(embed_dim=dims, depth=depth, num_heads=heads, mlp_ratio=4.0),
        head_dims=c['head_dim'] or dims // heads, moa_layers=moa, mlp_layers=mlp,
        moa_experts=c['num_attn_experts'], mlp_experts=c['num_ffd_experts'], mlp_top_k=top_k,
        mlp_hidden_dims=int(dims * c['mlp_ratio']) // c['ffd_heads'], renormalize=False,
        prob_floor=c['prob_eps'], noisy_gating=noisy.pop() if noisy else False,
        mi_weight=c['w_MI'], balance_weight=c['switchloss'], z_weight=c['zloss'],
        task_embedding=True, global_pool='avg', expert_init='modsquad')
    heads = {}
    for task in c['tasks']:
        if task.startswith('class'):
            heads[task] = dict(type='ClsHead', in_channels=dims, pre_norm=True,
                               num_classes=1000 if task == 'class_object' else 365)
        elif task in HEADS:
            kind, args = HEADS[task]
            heads[task] = dict(type=kind, in_channels=dims, unpatchify=c['patch_size'], **args)
    if not heads:
        raise ValueError(f"none of the tasks {c['tasks']} has a modzoo head; convertible: "
                         f'class_*, {sorted(HEADS)}')
    return dict(type='MultiTaskModel', backbone=backbone, heads=heads)


def convert_state_dict(state, config, model):
    """Official keys -> the keys of ``model`` (a built MultiTaskModel of ``model_cfg``)."""
    tasks, patch = config['tasks'], config['patch_size']
    out, gates = {}, {}
    for key, value in state.items():
        gate, head = GATE_KEY.fullmatch(key), HEAD_KEY.fullmatch(key)
        if gate:
            gates.setdefault(gate[1].replace('.q_proj', ''), {})[int(gate[2])] = value
        elif head:
            task = tasks[int(head[1])]
            if task not in model.heads:
                continue
            if task.startswith('class'):
                part = 'norm' if head[2] == '0' else 'fc'
                out[f'heads.{task}.{part}.{head[3]}'] = value
            else:  # rows (j k c) -> channels (c j k) of pixel_shuffle
                value = value.view(patch, patch, -1, *value.shape[1:]).movedim(2, 0)
                value = value.reshape(-1, *value.shape[3:])
                out[f'heads.{task}.conv_out.{head[3]}'] = (
                    value[..., None, None] if head[3] == 'weight' else value)
        elif key == 'task_embedding':
            out['backbone.task_embedding'] = value[0]                    # [T, D]
        else:
            block = BLOCK_KEY.fullmatch(key)
            if block:
                key = f'blocks.{block[1]}.{EXPERT_KEYS.get(block[2], block[2])}'
            out['backbone.' + key] = value
    for layer, rows in gates.items():
        weight = torch.stack([rows[t] for t in range(len(tasks))])  # [T, E or 2E, D]
        router = model.get_submodule(f'backbone.{layer}.router')
        out[f'backbone.{layer}.router.weight'] = weight[:, :router.num_experts]
        if router.noise_weight is not None:
            out[f'backbone.{layer}.router.noise_weight'] = weight[:, router.num_experts:]
    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(out))
    unused = sorted(set(out) - set(model.state_dict()))
    if missing or unused:
        raise KeyError(f'the official weights do not fit the converted model: no value for '
                       f'{missing}, no place for {unused}')
    return {**model.state_dict(), **out}


def build_converted(data, state, config, path):
    """(model with the converted weights loaded strictly, its config)."""
    try:
        cfg = model_cfg(config)
        model = MODELS.build(cfg)
        model.load_state_dict(convert_state_dict(state, config, model))
    except (ValueError, RuntimeError, KeyError) as err:    # config and weights disagree
        raise type(err)(f'{path}: {err}') from err
    return model.eval(), cfg


def verify(model, data, path):
    """Run IN's input -> {'TASK features' / 'TASK outputs': largest absolute difference}."""
    missing = [k for k in ('input', 'features', 'outputs') if k not in data]
    if missing:
        raise KeyError(f'{path}: --verify needs {missing} (the input and the official '
                       'per-task features and outputs)')
    x, diffs = data['input'].float(), {}
    with torch.no_grad():
        for task, want in data['features'].items():
            feats = model.backbone(x, task)
            got = (feats.cls_token if task.startswith('class')
                   else feats.maps[-1].flatten(2).transpose(1, 2))       # [B, N, D]
            diffs[f'{task} features'] = (got - want).abs().max().item()
            if task not in model.heads or task not in data['outputs']:
                continue
            head, want = model.heads[task], data['outputs'][task]
            got = head(feats) if task.startswith('class') else \
                head(feats, want.shape[1:3]).permute(0, 2, 3, 1)         # [B, H, W, C]
            diffs[f'{task} outputs'] = (got - want).abs().max().item()
    return diffs


def main(argv=None):
    parser = converter_parser(
        __doc__.split('\n\n')[0], 'official Mod-Squad checkpoint (state_dict or model)',
        'compare with the official features and outputs stored in SRC', tol=1e-5)
    parser.add_argument('--preset', choices=sorted(PRESETS),
                        help="the official factory function, when SRC has no 'config'")
    parser.add_argument('--tasks', nargs='+',
                        help='the official task order, when SRC has no config (default: '
                             'the Taskonomy list of main_mt.py)')
    args = parser.parse_args(argv)

    data, state, config = load_official(args.src, args.preset, args.tasks)
    model, cfg = build_converted(data, state, config, args.src)
    skipped = [t for t in config['tasks'] if t not in model.heads]
    if skipped:
        print(f'no modzoo head for {skipped}: their routers and task embedding are kept, '
              'their heads left out')
    diffs = verify(model, data, args.src) if args.verify else None
    return write_converted(model, cfg, args.dst, diffs, args.tol)


if __name__ == '__main__':
    sys.exit(main())
