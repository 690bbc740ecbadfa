"""modzoo.deploy and tools/deploy/export.py: each family exports, onnxruntime agrees."""
import os.path as osp

import numpy as np
import onnxruntime
import pytest
import torch
from mmengine.config import Config

from modzoo.analysis import extract_task
from modzoo.deploy import ExportError, TaskPredictor, export_onnx, export_program
from modzoo.models.layers.moe_export import set_export_dispatch
from modzoo.registry import MODELS
from modzoo.structures import TaskDataSample

from tool_runner import REPO, load_tool

CONFIGS = osp.join(REPO, 'configs')
SMALL_VIT = dict(arch=dict(embed_dim=32, depth=2, num_heads=2), img_size=32, patch_size=8)


def small_model(config, backbone, heads_in=32, neck=None, seed=0):
    """The model of ``config`` with a 2-block, 32-wide backbone at 32 px."""
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    cfg.model.backbone.update(backbone)
    if neck:
        cfg.model.neck.update(neck)
    for head in cfg.model.heads.values():
        head.update(in_channels=heads_in, **({'in_index': (0, )} if 'in_index' in head else {}))
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model).eval()
    for name, p in model.named_parameters():
        if name.endswith('bias') or 'router' in name:  # nothing left at its zero init
            torch.nn.init.normal_(p, std=0.1)
    model.cfg = cfg
    return model


def moe_model():
    return small_model('moe_vit/moe-vit-tiny_synth_hetero.py', dict(
        SMALL_VIT, out_indices=(1, ), moa_experts=4, mlp_experts=6, mlp_top_k=2))


def extracted_moe_model(keep_top_k=False):
    model = moe_model()
    with torch.no_grad():  # usage counts to select the experts by
        model._task_features(torch.rand(4, 3, 32, 32), ('semseg', ))
    cfg, state, kept = extract_task(model, model.cfg, 'semseg', keep_top_k=keep_top_k)
    small = MODELS.build(cfg.model).eval()
    small.load_state_dict(state)
    small.cfg = cfg
    return small


def multilane_model():
    cfg = Config.fromfile(osp.join(CONFIGS, 'multilane', 'multilane-tiny_synth-voc-b3c2.py'))
    cfg.model.pretrained = None
    cfg.model.backbone.update(vit_cfg=dict(img_size=32, patch_size=8, embed_dim=32, depth=2,
                                           num_heads=2), num_prompt_layers=1)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    model.next_task()  # pathways 0 and 1 in use
    for p in model.backbone.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.5)
    return model


FAMILIES = {
    'dense': (lambda: small_model('quickstart/vit-tiny_synth_mtl.py',
                                  dict(SMALL_VIT, out_indices=(1, ))), 'depth'),
    'moe': (moe_model, 'cls'),
    'extracted-moe': (extracted_moe_model, 'semseg'),
    # k experts per layer: no dispatch in eager, the same all-experts graph in the export
    'extracted-moe-top-k': (lambda: extracted_moe_model(keep_top_k=True), 'semseg'),
    'taskexpert': (lambda: small_model(
        'taskexpert/taskexpert_vit-tiny-p8_synth-nyud.py', dict(SMALL_VIT, out_indices=(0, 1)),
        heads_in=16, neck=dict(in_channels=32, in_index=(0, 1), channels=16)), 'normals'),
    'multilane': (multilane_model, None),
}


@pytest.mark.parametrize('family', list(FAMILIES))
def test_onnx_export_equals_pytorch(family, tmp_path):
    build, task = FAMILIES[family]
    model = build()
    images = torch.rand(2, 3, 32, 32) * 255
    predictor = TaskPredictor(model, task)
    with torch.no_grad():  # the export-friendly MoE path predicts what the sort-based one does
        exported_path = predictor(images)
        set_export_dispatch(model, False)
        torch.testing.assert_close(predictor(images), exported_path, atol=1e-5, rtol=1e-5)
        set_export_dispatch(model, True)
    export_onnx(predictor, images, str(tmp_path / 'model.onnx'))
    session = onnxruntime.InferenceSession(str(tmp_path / 'model.onnx'),
                                           providers=['CPUExecutionProvider'])
    check = torch.rand(3, 3, 32, 32) * 255  # another batch size: the batch is dynamic
    with torch.no_grad():
        expected = predictor(check).numpy()
    got = session.run(None, {'images': check.numpy()})[0]
    assert got.shape == expected.shape and got.shape[0] == 3
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_predictor_matches_the_models_predict():
    model = moe_model()
    images = torch.rand(2, 3, 32, 32) * 255
    samples = model.test_step(dict(inputs=list(images), data_samples=[
        TaskDataSample(metainfo=dict(tasks=('cls', ), img_shape=(32, 32))) for _ in range(2)]))
    with torch.no_grad():
        scores = TaskPredictor(model, 'cls')(images)
    torch.testing.assert_close(scores, torch.stack([s.pred_score for s in samples]))


def test_predictor_keeps_no_statistics():
    model = moe_model()
    usage = {name: layer.router.usage.clone() for name, layer in model.backbone.moe_layers()}
    with torch.no_grad():
        TaskPredictor(model, 'cls')(torch.rand(2, 3, 32, 32) * 255)
    for name, layer in model.backbone.moe_layers():
        assert torch.equal(layer.router.usage, usage[name]), name


def test_export_tool_writes_a_program_that_loads(tmp_path):
    model = small_model('quickstart/vit-tiny_synth_mtl.py', dict(SMALL_VIT, out_indices=(1, )))
    ckpt, config = str(tmp_path / 'model.pth'), str(tmp_path / 'config.py')
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    model.cfg.dump(config)
    result = load_tool('deploy/export.py').main([
        config, ckpt, '--task', 'cls', '--format', 'exported-program',
        '--out', str(tmp_path / 'cls.pt2'), '--verify'])
    assert result['input'] == ['B', 3, 32, 32] and result['max_abs_diff'] < 1e-5
    program = torch.export.load(str(tmp_path / 'cls.pt2'))
    scores = program.module()(torch.rand(5, 3, 32, 32) * 255)
    torch.testing.assert_close(scores.sum(1), torch.ones(5))


def test_a_layer_that_cannot_export_is_named(tmp_path):
    model = moe_model()
    predictor = TaskPredictor(model, 'cls')
    set_export_dispatch(model, False)  # the sort-based dispatch reads group sizes to Python
    blocked = r'layer model\.backbone\.blocks\.0\.attn \(RoutedAttention\)'
    with pytest.raises(ExportError, match=blocked):
        export_program(predictor, torch.rand(2, 3, 32, 32) * 255, str(tmp_path / 'x.pt2'))
    with pytest.raises(KeyError, match="no head for task 'edge'"):
        TaskPredictor(model, 'edge')
