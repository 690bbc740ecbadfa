"""Every model family trains under bf16 autocast on the CPU (``tools/train.py --amp``)."""
import os.path as osp
import sys
from collections import defaultdict

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner import set_random_seed
from mmengine.structures import BaseDataElement

from modzoo.datasets.class_incremental import split_classes
from modzoo.engine.optimizers import BF16OptimWrapper, amp_optim_wrapper, bf16_support
from modzoo.registry import DATASETS, MODELS

from tool_runner import QUICKSTART, REPO, load_tool

pytestmark = pytest.mark.skipif(bool(bf16_support('cpu')), reason='CPU without bf16')
CONFIGS = osp.join(REPO, 'configs')
ROUNDS = 6  # steps per task, on the same batch


def bf16_wrapper(cfg, model):
    with DefaultScope.overwrite_default_scope('modzoo'):
        wrapper = build_optim_wrapper(model, amp_optim_wrapper(cfg.optim_wrapper, 'cpu'))
    assert isinstance(wrapper, BF16OptimWrapper)
    return wrapper


def task_batches(cfg, data_root, per_task=2):
    """{task: a batch of ``per_task`` training samples of that task} from the config's data."""
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = data_root
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    by_task = defaultdict(list)
    for i in range(len(dataset)):
        item = dataset[i]
        tasks = item['data_samples'].tasks
        if len(by_task[tasks]) < per_task:
            by_task[tasks].append(item)
        if len(by_task) == len(cfg.model.heads) and \
                all(len(v) == per_task for v in by_task.values()):
            break
    return {tasks: pseudo_collate(items) for tasks, items in by_task.items()}


def train_rounds(model, wrapper, batches):
    """Each batch trained ``ROUNDS`` times, the tasks in turn; {loss name: [value per round]}."""
    losses = defaultdict(list)
    model.train()
    for _ in range(ROUNDS):
        for batch in batches.values():
            for name, value in model.train_step(batch, wrapper).items():
                if name.startswith('loss_') and not name.startswith('loss_moe'):
                    losses[name].append(value.item())
    return losses


def assert_finite_and_down(losses, names):
    assert set(names) <= set(losses), f'missing losses: {set(names) - set(losses)}'
    for name in names:
        values = losses[name]
        assert all(map(torch.isfinite, torch.tensor(values))), f'{name}: {values}'
        assert sum(values[-2:]) / 2 < values[0], f'{name} did not go down under bf16: {values}'


@pytest.mark.parametrize('name', ['quickstart/vit-tiny_synth_mtl.py',
                                  'moe_vit/moe-vit-tiny_synth_hetero.py',
                                  'taskexpert/taskexpert_vit-tiny-p8_synth-nyud.py'])
def test_multi_task_families_train_under_bf16(name, tiny_synth):
    set_random_seed(0)  # the model and the random transforms of the batches
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    model = MODELS.build(cfg.model)
    losses = train_rounds(model, bf16_wrapper(cfg, model), task_batches(cfg, tiny_synth))
    assert_finite_and_down(losses, [f'loss_{task}' for task in cfg.model.heads])


def test_hetero_detection_trains_under_bf16(tiny_synth):
    """configs/hetero's Mask R-CNN (RPN, RoIAlign, box and mask heads) beside cls and semseg,
    on a 2-block ViT of width 32."""
    set_random_seed(0)  # the model and the random transforms of the batches
    cfg = Config.fromfile(osp.join(CONFIGS, 'hetero', 'vit-tiny_synth_cls-det-seg.py'))
    cfg.model.backbone.update(arch=dict(embed_dim=32, depth=2, num_heads=2), out_indices=(0, 1))
    for head in cfg.model.heads.values():
        head.update(in_channels=32, **({'in_index': (0, 1)} if 'in_index' in head else {}))
    cfg.train_dataloader.dataset.synth_if_missing = False
    model = MODELS.build(cfg.model)
    losses = train_rounds(model, bf16_wrapper(cfg, model), task_batches(cfg, tiny_synth))
    assert_finite_and_down(losses, ['loss_cls', 'loss_det', 'loss_semseg'])


@pytest.mark.parametrize('name', ['chameleon-tiny_synth-episodes.py',
                                  'chameleon-tiny-moevit_synth-episodes.py'])
def test_chameleon_trains_under_bf16(name):
    """An episode batch of configs/chameleon's tiny configs (BEiT and MoEViT image encoders;
    every loss type the batch draws)."""
    set_random_seed(0)  # the model and the episodes drawn
    cfg = Config.fromfile(osp.join(CONFIGS, 'chameleon', name))
    cfg.train_dataloader.dataset.update(num_scenes=16, shot=2, query=2, channels=4)
    model = MODELS.build(cfg.model)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    batch = pseudo_collate([dataset[0], dataset[1]])
    losses = train_rounds(model, bf16_wrapper(cfg, model), {'episodes': batch})
    assert_finite_and_down(losses, [name for name in losses])


def test_multilane_trains_under_bf16():
    set_random_seed(0)  # the model and the random transforms of the batches
    cfg = Config.fromfile(osp.join(CONFIGS, 'multilane', 'multilane-tiny_synth-voc-b3c2.py'))
    cfg.model.pretrained = None
    model = MODELS.build(cfg.model)
    samples = []
    for label in split_classes(cfg.synth_voc_classes, base=3, increment=2)[0][:2]:
        sample = BaseDataElement(metainfo=dict(tasks=('multilabel', )))
        sample.gt_labels = torch.eye(11)[label]
        samples.append(sample)
    images = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in samples]
    batch = dict(inputs=images, data_samples=samples)
    losses = train_rounds(model, bf16_wrapper(cfg, model), {'multilabel': batch})
    assert_finite_and_down(losses, ['loss_cls'])


def test_quickstart_bf16_forward_agrees_with_fp32(tiny_synth):
    set_random_seed(0)  # the model and the random transforms of the batches
    cfg = Config.fromfile(QUICKSTART)
    model = MODELS.build(cfg.model).eval()
    batches = task_batches(cfg, tiny_synth, per_task=4)
    for (task, ), batch in batches.items():
        data = model.data_preprocessor(batch, False)
        head = model.heads[task]

        def features_and_head_output():
            feats = model(**data, mode='tensor')[task]
            out = head(feats) if task in ('cls', 'multilabel') else head(feats, (32, 32))
            return [*feats.maps, out]
        with torch.no_grad():
            fp32 = features_and_head_output()
            with torch.autocast('cpu', torch.bfloat16):
                bf16 = features_and_head_output()
        assert bf16[-1].dtype == torch.bfloat16  # the head ran in bf16
        for a, b in zip(fp32, bf16):
            # bf16 keeps 8 bits of mantissa: 2^-8 relative per rounding, a few roundings deep
            error = (b.float() - a).abs().max() / a.abs().max()
            assert error <= 0.03, f'{task}: bf16 differs from fp32 by {error:.3f} of the max'


def test_train_tool_amp_picks_the_bf16_wrapper(monkeypatch, tmp_path):
    train = load_tool('train.py')
    monkeypatch.setattr(sys, 'argv', ['train.py', QUICKSTART, '--amp', '--work-dir',
                                      str(tmp_path)])
    cfg = train.merge_args(Config.fromfile(QUICKSTART), train.parse_args())
    assert cfg.optim_wrapper.type == 'BF16OptimWrapper'
    assert cfg.optim_wrapper.optimizer == Config.fromfile(QUICKSTART).optim_wrapper.optimizer
    # (tools/demo.py --amp trains through it: tests/tools/test_train_test_tools.py)
