"""MoE ViT configs and modularity tools: expert usage (hook + heatmaps), extraction, expansion,
fine-tuning recipes and FLOP counting."""
import copy
import json
import os.path as osp
import shutil
import sys
from types import SimpleNamespace

import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.optim import build_optim_wrapper
from mmengine.runner import Runner, load_checkpoint
from timm.layers import Attention

from modzoo import model_index
from modzoo.analysis import (FLOP_HANDLES, active_params, count_flops, count_params, expand_model,
                             extract_task, keep_task_data, select_experts)
from modzoo.engine import check_tasks, save_checkpoint_atomic
from modzoo.engine.hooks import ExpertUsageHook
from modzoo.hub import WeightsNotFoundError
from modzoo.models.backbones.moe_vit import MoEViT
from modzoo.registry import MODELS
from modzoo.structures import TaskDataSample

from tool_runner import REPO, load_tool

CONFIGS = osp.join(REPO, 'configs')
MOE_TINY = osp.join(CONFIGS, 'moe_vit', 'moe-vit-tiny_synth_hetero.py')
# the official shared counts + 2 tasks' routers and task-embedding rows
FULL = {'moe_vit/moe-vit-s16_modsquad-twice_in1k-ade20k-224px.py': 52_542_336,
        'moe_vit/moe-vit-b16_modsquad-twice_in1k-ade20k-224px.py': 200_717_568}


def run_main(path, *argv, monkeypatch):
    monkeypatch.setattr(sys, 'argv', [path, *argv])
    load_tool(path).main()


def small_cfg(data_root=None, experts=8):
    """The tiny hetero config with a 2-block, 32-wide MoE ViT (8 experts, top-2)."""
    cfg = Config.fromfile(MOE_TINY)
    cfg.model.backbone.update(arch=dict(embed_dim=32, depth=2, num_heads=2), out_indices=(1, ),
                              moa_experts=experts, mlp_experts=experts, mlp_top_k=2)
    for head in cfg.model.heads.values():
        head.update(in_channels=32, **({'in_index': (0, )} if 'in_index' in head else {}))
    if data_root:
        for split in ('train', 'val', 'test'):
            cfg[f'{split}_dataloader'].update(num_workers=0, persistent_workers=False,
                                              batch_size=4)
            cfg[f'{split}_dataloader'].dataset.data_root = data_root
    return cfg


def samples(task, size, n=1, **gt):
    out = []
    for _ in range(n):
        sample = TaskDataSample(metainfo=dict(tasks=(task, ), img_shape=size, pad_shape=size))
        for key, value in gt.items():
            setattr(sample, key, value)
        out.append(sample)
    return out


def task_logits(model, x, task):
    """The head output of ``task`` for images x."""
    feats = model._task_features(x, (task, ))[0][task]
    head = model.heads[task]
    return head(feats, x.shape[-2:]) if task != 'cls' else head(feats)


def test_select_experts_threshold_rule():
    # shares 50/30/15/4/1/0 % > 3 / 2 = 1.5 %
    assert select_experts(torch.tensor([50, 30, 15, 4, 1, 0]), top_k=2) == [0, 1, 2, 3]
    # only one passes: the top-k by usage
    assert select_experts(torch.tensor([100, 0, 1, 0]), top_k=2, thresh=3) == [0, 2]
    # keep_top_k: the k most used only, whatever passes the threshold
    assert select_experts(torch.tensor([30, 50, 15, 4, 1, 0]), top_k=2, keep_top_k=True) == [0, 1]
    with pytest.raises(ValueError, match='never routed a token'):
        select_experts(torch.zeros(4), top_k=2)


def test_extracted_model_predicts_as_the_full_model(tmp_path, monkeypatch):
    cfg = small_cfg()
    cfg_path = str(tmp_path / 'moe.py')
    cfg.dump(cfg_path)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    # 1 image of 8 x 16 px: 3 tokens x 2 choices reach at most 6 of the 8 experts per layer
    x = torch.randn(1, 3, 8, 16)
    with torch.no_grad():
        full = task_logits(model, x, 'semseg')
    save_checkpoint_atomic(dict(state_dict=model.state_dict()), str(tmp_path / 'full.pth'))

    run_main('extract.py', cfg_path, str(tmp_path / 'full.pth'), '--task', 'semseg',
             '--out', str(tmp_path / 'out'), '--thresh', '0', monkeypatch=monkeypatch)
    sub_cfg = Config.fromfile(str(tmp_path / 'out' / 'moe_semseg.py'))
    assert list(sub_cfg.model.heads) == ['semseg'] and sub_cfg.model.backbone.tasks == ['semseg']
    assert list(sub_cfg.train_dataloader.dataset.sources) == ['semseg']
    assert [m.task for m in sub_cfg.val_evaluator] == ['semseg']
    kept = sub_cfg.model.backbone.moa_experts + sub_cfg.model.backbone.mlp_experts
    assert all(2 <= k <= 6 for k in kept), kept
    sub = MODELS.build(sub_cfg.model).eval()
    sub.load_state_dict(torch.load(sub_cfg.load_from, weights_only=True)['state_dict'])
    assert count_params(sub) < count_params(model)
    with torch.no_grad():
        assert torch.allclose(task_logits(sub, x, 'semseg'), full, atol=1e-5)

    # the extracted checkpoint does not load into the full config
    with pytest.raises(ValueError, match='over 8 experts'):
        model.load_state_dict(sub.state_dict(), strict=False)


def test_expansion_keeps_old_predictions(tmp_path):
    torch.manual_seed(0)
    cfg = small_cfg(experts=4)
    cfg.model.heads = {t: cfg.model.heads[t] for t in ('cls', 'semseg')}
    cfg.model.backbone.tasks = ['cls', 'semseg']
    model = MODELS.build(cfg.model).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        old = {t: task_logits(model, x, t) for t in ('cls', 'semseg')}

    head = dict(type='DepthHead', in_channels=32, in_index=(0, ))
    new_cfg, state = expand_model(model, cfg, 'depth', head, new_experts=2)
    assert new_cfg.model.backbone.mlp_experts == [6] and new_cfg.model.backbone.new_experts == 2
    assert new_cfg.optim_wrapper.paramwise_cfg.custom_keys['fc1_weight'] == dict(decay_mult=0)
    grown = MODELS.build(new_cfg.model)
    grown.load_state_dict(state, strict=False)  # the new head keeps its init
    mlp = grown.backbone.blocks[1].mlp
    before = mlp.fc1_weight.detach().clone()
    optim = build_optim_wrapper(grown, copy.deepcopy(new_cfg.optim_wrapper))
    grown.train()
    batch = samples('depth', (16, 16), 2, gt_depth=torch.rand(16, 16) + 1)
    for _ in range(3):
        optim.update_params(sum(grown.loss(x, batch).values()))
    grown.eval()
    with torch.no_grad():
        for task, logits in old.items():
            assert torch.allclose(task_logits(grown, x, task), logits, atol=1e-6), task
    assert torch.equal(mlp.fc1_weight[:4], before[:4])
    used = mlp.router.usage[2, 4:] > 0  # new experts the new task picked moved
    assert all(not torch.equal(mlp.fc1_weight[4 + i], before[4 + i]) for i in range(2) if used[i])
    assert mlp.router.usage[:2, 4:].sum() == 0  # the old tasks never pick them
    with pytest.raises(ValueError, match="task 'cls' is already"):
        expand_model(model, cfg, 'cls', head, 1)


def test_expand_tool_writes_a_config_that_trains_the_new_task(tmp_path, monkeypatch):
    torch.manual_seed(0)
    cfg = small_cfg(experts=4)
    cfg.model.heads = {t: cfg.model.heads[t] for t in ('cls', 'semseg')}
    cfg.model.backbone.tasks = ['cls', 'semseg']
    for split in ('train', 'val'):
        sources = cfg[f'{split}_dataloader'].dataset.sources
        cfg[f'{split}_dataloader'].dataset.sources = {k: sources[k] for k in ('cls', 'semseg')}
    cfg_path, data_path = str(tmp_path / 'moe.py'), str(tmp_path / 'data.py')
    cfg.dump(cfg_path)
    small_cfg().dump(data_path)  # its sources label cls, semseg, depth and normals
    model = MODELS.build(cfg.model).eval()
    save_checkpoint_atomic(dict(state_dict=model.state_dict()), str(tmp_path / 'full.pth'))
    x = torch.randn(2, 3, 16, 16)

    argv = [cfg_path, str(tmp_path / 'full.pth'), '--task', 'depth', '--out',
            str(tmp_path / 'out'), '--head', 'type=DepthHead', 'in_channels=32', 'in_index=0,',
            '--new-experts', '1']
    with pytest.raises(ValueError, match="moe.py: train_dataloader has no source labelling "
                                         r"task\(s\) \['depth'\]; its sources label "
                                         r"\['cls', 'semseg'\]"):
        run_main('expand.py', *argv, monkeypatch=monkeypatch)
    run_main('expand.py', *argv, '--data', data_path, monkeypatch=monkeypatch)
    new_cfg = Config.fromfile(str(tmp_path / 'out' / 'moe_depth.py'))
    assert new_cfg.model.backbone.tasks == ['cls', 'semseg', 'depth']
    assert new_cfg.model.backbone.mlp_experts == [5]
    assert sorted(new_cfg.model.heads) == ['cls', 'depth', 'semseg']
    assert list(new_cfg.train_dataloader.dataset.sources) == ['depth']
    assert [m.task for m in new_cfg.val_evaluator] == ['depth']
    check_tasks(new_cfg)  # the frozen old tasks need no training data
    grown = MODELS.build(new_cfg.model).eval()
    load_checkpoint(grown, new_cfg.load_from, strict=False)
    with torch.no_grad():
        for task in ('cls', 'semseg'):
            assert torch.allclose(task_logits(grown, x, task), task_logits(model, x, task),
                                  atol=1e-6), task


def test_keep_task_data_picks_the_sources_and_metrics_of_some_tasks():
    cfg, source = small_cfg(), small_cfg()
    keep_task_data(cfg, ['normals', 'cls'], source, 'src.py', splits=('test', ))
    sources = cfg.test_dataloader.dataset.sources
    assert sorted(sources) == ['cls', 'normals']
    assert all(src['tasks'] == [name] for name, src in sources.items())
    assert sorted(m.task for m in cfg.test_evaluator) == ['cls', 'normals']
    assert sorted(cfg.train_dataloader.dataset.sources) == ['cls', 'depth', 'normals', 'semseg']
    with pytest.raises(ValueError, match=r"src.py: test_evaluator has no metric of "
                                         r"task\(s\) \['parts'\]; its metrics: \['cls'"):
        keep_task_data(cfg, ['parts'], source, 'src.py', splits=('test', ))


def test_expert_usage_hook_writes_each_phase(tmp_path):
    model = MoEViT(arch=dict(embed_dim=16, depth=2, num_heads=2), tasks=['a', 'b'],
                   img_size=16, patch_size=8, moa_experts=4, mlp_experts=4, mlp_top_k=2)
    runner = SimpleNamespace(model=model, work_dir=str(tmp_path), iter=3)
    hook = ExpertUsageHook()
    x = torch.randn(2, 3, 16, 16)  # 2 images x 5 tokens x top-2 = 20 choices a pass
    hook.before_train(runner)
    model(x, 'a')
    model(x, 'b')
    hook.before_val_epoch(runner)
    model(x, 'b')
    hook.after_val_epoch(runner)
    model(x, 'a')
    hook.after_train(runner)
    hook.before_test_epoch(runner)
    model(x, 'a')
    model(x, 'a')
    hook.after_test_epoch(runner)
    rows = {}
    for phase in ('train', 'val', 'test'):
        with open(tmp_path / f'expert_usage_{phase}.json') as f:
            report = json.load(f)
        assert report['phase'] == phase and report['iter'] == 3
        assert list(report['layers']) == ['blocks.0.attn', 'blocks.1.mlp']
        layer = report['layers']['blocks.1.mlp']
        assert layer['tasks'] == ['a', 'b'] and layer['top_k'] == 2
        rows[phase] = [sum(r) for r in layer['counts']]
    assert rows == dict(train=[40, 20], val=[0, 20], test=[40, 0])


def test_expert_usage_heatmaps_from_work_dir_and_checkpoint(tmp_path, monkeypatch):
    model = MoEViT(arch=dict(embed_dim=16, depth=2, num_heads=2), tasks=['a', 'b'],
                   img_size=16, patch_size=8, moa_experts=4, mlp_experts=4, mlp_top_k=2)
    runner = SimpleNamespace(model=model, work_dir=str(tmp_path), iter=1)
    hook = ExpertUsageHook()
    hook.before_test_epoch(runner)
    model(torch.randn(1, 3, 16, 16), 'a')
    hook.after_test_epoch(runner)
    run_main('analysis/expert_usage.py', str(tmp_path), monkeypatch=monkeypatch)
    assert (tmp_path / 'expert_usage' / 'expert_usage.png').stat().st_size > 0
    assert (tmp_path / 'expert_usage' / 'blocks.1.mlp.png').is_file()
    ckpt = tmp_path / 'ckpt.pth'
    save_checkpoint_atomic(dict(state_dict=model.state_dict()), str(ckpt))
    run_main('analysis/expert_usage.py', str(ckpt), '--out', str(tmp_path / 'c'),
             monkeypatch=monkeypatch)
    assert (tmp_path / 'c' / 'blocks.0.attn.png').is_file()
    with pytest.raises(FileNotFoundError, match='expert_usage_val.json'):
        run_main('analysis/expert_usage.py', str(tmp_path), '--phase', 'val',
                 monkeypatch=monkeypatch)


def test_flop_handles_and_active_params():
    x = torch.randn(2, 10, 32)
    attn = Attention(32, num_heads=4).eval()
    flops = FlopCountAnalysis(attn, (x, )).set_op_handle(**FLOP_HANDLES).by_operator()
    assert flops['scaled_dot_product_attention'] == 2 * 4 * 10 * 10 * (8 + 8)

    kwargs = dict(arch=dict(embed_dim=32, depth=2, num_heads=2), tasks=['a', 'b'],
                  img_size=16, patch_size=8, moa_layers=[], mlp_layers=[0, 1])
    moe = MoEViT(**kwargs, mlp_experts=8, mlp_top_k=2)  # hidden 4D / k = 64
    dense = MoEViT(**kwargs, mlp_experts=2, mlp_top_k=2)
    experts = 2 * (32 * 64 + 64 + 64 * 32 + 32)  # one expert of each of the 2 layers
    routers = 2 * 32 * 8  # one task's router rows in each layer
    assert active_params(moe, 'a') == count_params(moe) - 6 * experts - routers
    assert active_params(dense, 'a') - 2 * 32 * 2 == active_params(moe, 'a') - routers
    # the k active experts cost one dense MLP: only the routers and the combine's [S, E] gate
    # matrix times the experts' output biases grow with E (5 tokens, 2 layers, each S x E x D)
    img = torch.randn(1, 3, 16, 16)
    moe, dense = (MoEViT(**dict(kwargs, tasks=['a']), mlp_experts=e, mlp_top_k=2)
                  for e in (8, 2))
    assert count_flops(moe, (img, )) - count_flops(dense, (img, )) == 2 * (2 * 5 * 32 * (8 - 2))
    router = moe.blocks[0].mlp.router  # counting leaves the usage alone
    assert router.usage.sum() == 0 and router.usage_ema.sum() == 0


def test_flops_tool(tmp_path, monkeypatch, capsys):
    path = str(tmp_path / 'moe.py')
    small_cfg().dump(path)
    run_main('analysis/flops.py', path, '--json', monkeypatch=monkeypatch)
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sorted(report['tasks']) == ['cls', 'depth', 'normals', 'semseg']
    assert report['img_size'] == [64, 64]
    assert all(0 < t['active_params'] < report['params'] and t['gflops'] > 0
               for t in report['tasks'].values())


@pytest.mark.parametrize('name', list(FULL))
def test_full_size_configs_build_and_run_forward(name):
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    with torch.device('meta'):
        backbone = MODELS.build(cfg.model.backbone)
    assert count_params(backbone) == FULL[name]
    backbone = backbone.to_empty(device='cpu')
    with torch.no_grad():  # cheap constant weights: this checks that the graph runs
        for param in backbone.parameters():
            param.fill_(0.02)
    feats = backbone(torch.randn(1, 3, 32, 32), 'semseg')
    assert [tuple(m.shape) for m in feats.maps] == [(1, backbone.embed_dim, 2, 2)] * 4
    assert torch.isfinite(feats.maps[-1]).all()


def test_tiny_config_trains_tests_and_saves_usage(tiny_synth, tmp_path):
    cfg = small_cfg(tiny_synth)  # the config's data, heads, losses and hooks; a small ViT
    cfg.train_cfg.update(max_iters=4, val_interval=100)  # no validation: the hook test has it
    cfg.param_scheduler = []
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    losses = runner.message_hub.log_scalars
    assert 'train/loss_moe_mi' in losses
    metrics = runner.test()
    assert {'cls/top1', 'semseg/mIoU', 'depth/rmse', 'normals/mean_angle'} <= set(metrics)
    for phase in ('train', 'test'):
        with open(tmp_path / f'expert_usage_{phase}.json') as f:
            layers = json.load(f)['layers']
        assert list(layers) == ['backbone.blocks.0.attn', 'backbone.blocks.1.mlp']


EXTRACTED = 'moe-vit-tiny_synth_hetero_extract-cls'
# recipe -> the parameters it trains
FINETUNE = {'moe_routers-head_extract-cls_synth-voc.py': ('router.weight', 'heads.'),
            'moe_experts_extract-cls_synth-voc.py':
                ('router.weight', 'heads.', 'fc1_', 'fc2_', 'q_weight', 'out_weight')}


@pytest.fixture
def fresh_checkout(tmp_path, monkeypatch):
    """A copy of configs/ as the zoo (no work_dirs beside it) and tmp_path as the cwd."""
    shutil.copytree(CONFIGS, tmp_path / 'repo' / 'configs', ignore=shutil.ignore_patterns('*.png'))
    monkeypatch.setattr(model_index, 'CONFIGS_DIR', str(tmp_path / 'repo' / 'configs'))
    monkeypatch.chdir(tmp_path)
    return tmp_path / 'repo' / 'configs' / 'finetune'


@pytest.mark.parametrize('recipe', [f'{EXTRACTED}.py', *FINETUNE])
def test_finetune_configs_on_a_fresh_checkout_name_the_commands(recipe, fresh_checkout):
    cfg = Config.fromfile(str(fresh_checkout / recipe))  # no generated file as _base_
    with pytest.raises(WeightsNotFoundError) as error:
        MODELS.build(cfg.model)
    assert f"zoo model '{EXTRACTED}' has no published weights and no checkpoint in " \
           f'work_dirs/{EXTRACTED}/; make it with: python tools/train.py ' \
           'configs/moe_vit/moe-vit-tiny_synth_hetero.py && python tools/extract.py ' in \
           str(error.value)


def test_extracted_config_is_the_one_extract_writes():
    cfg = Config.fromfile(MOE_TINY)
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    usage = {f'backbone.{name}': torch.ones(4, layer.num_experts)
             for name, layer in model.backbone.moe_layers()}
    written, _, _ = extract_task(model, cfg, 'cls', usage)
    ours = Config.fromfile(osp.join(CONFIGS, 'finetune', f'{EXTRACTED}.py'))
    assert ours.load_from == ours.model.backbone.pop('experts_from') == f'modzoo://{EXTRACTED}'
    for key in ('moa_experts', 'mlp_experts'):  # read from the checkpoint instead
        written.model.backbone.pop(key)
        ours.model.backbone.pop(key)
    for key in ('model', 'train_dataloader', 'val_dataloader', 'test_dataloader',
                'val_evaluator', 'test_evaluator'):
        assert ours[key] == written[key], key


@pytest.mark.parametrize('recipe', list(FINETUNE))
def test_finetune_recipes_read_the_local_run_and_move_only_what_they_train(
        recipe, tiny_synth, fresh_checkout):
    cfg = small_cfg()
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    model(torch.randn(1, 3, 16, 16), [TaskDataSample(metainfo=dict(tasks=('cls', )))])
    _, state, kept = extract_task(model, cfg, 'cls')
    # what tools/extract.py --out work_dirs/<name> writes: its newest checkpoint is the zoo model
    save_checkpoint_atomic(dict(state_dict=state), f'work_dirs/{EXTRACTED}/cls.pth')

    ft = Config.fromfile(str(fresh_checkout / recipe))
    ft.model.backbone.update(arch=dict(embed_dim=32, depth=2, num_heads=2), out_indices=(1, ),
                             mlp_top_k=2)
    for head in ft.model.heads.values():
        head.in_channels = 32
    for split in ('train', 'val', 'test'):
        ft[f'{split}_dataloader'].update(num_workers=0, persistent_workers=False, batch_size=4)
        ft[f'{split}_dataloader'].dataset.data_root = tiny_synth
    ft.train_cfg.update(max_iters=2, val_interval=100)
    ft.param_scheduler = []
    ft.work_dir = 'ft'
    runner = Runner.from_cfg(ft)
    assert [layer.num_experts for _, layer in runner.model.backbone.moe_layers()] == \
        [len(experts) for experts in kept.values()]
    start = {}

    class Snapshot(Hook):  # the weights after load_from, before the first step

        def before_train(self, runner):
            start.update((n, p.detach().clone()) for n, p in runner.model.named_parameters())

    runner.register_hook(Snapshot(), 'LOWEST')
    runner.train()
    for name, param in runner.model.named_parameters():
        if name.startswith('backbone.'):  # load_from read the sub-network
            assert torch.equal(start[name], state[name]), name
        moved = not torch.equal(param, start[name])
        assert moved == (any(key in name for key in FINETUNE[recipe]) and param.requires_grad), \
            name


def test_extraction_reads_the_moving_average_by_default():
    cfg = small_cfg()
    model = MODELS.build(cfg.model).eval()
    row = model.backbone.task_index('cls')
    for _, layer in model.backbone.moe_layers():
        layer.router.usage[row] = torch.tensor([50, 50, 50, 50, 5, 5, 5, 5])  # since built
        layer.router.usage_ema[row] = torch.tensor([9., 9., 0, 0, 0, 0, 0, 0])  # lately
    kept = {rule: extract_task(model, cfg, 'cls', rule=rule)[2] for rule in ('ema', 'total')}
    assert set(map(tuple, kept['ema'].values())) == {(0, 1)}
    assert set(map(tuple, kept['total'].values())) == {(0, 1, 2, 3, 4, 5, 6, 7)}
    with pytest.raises(ValueError, match="usage rule must be one of"):
        extract_task(model, cfg, 'cls', rule='last')
