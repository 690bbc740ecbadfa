"""The zoo API on a metafile written by the test: list_models, get_model, inference."""
import functools
import hashlib
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import mmcv
import numpy as np
import pytest
import torch
from mmengine.runner.checkpoint import _load_checkpoint

import modzoo
from modzoo import model_index, zoo
from modzoo.engine.checkpoint import save_checkpoint_atomic
from modzoo.hub import WeightsNotFoundError, resolve

CONFIG = """
model = dict(
    type='MultiTaskModel',
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3),
    backbone=dict(type='ViT', arch=dict(embed_dim=32, depth=2, num_heads=2), img_size=32,
                  patch_size=8, out_indices=(0, 1)),
    heads=dict(cls=dict(type='ClsHead', num_classes=3, in_channels=32),
               depth=dict(type='DepthHead', in_channels=32, in_index=(0, 1), channels=8)))
pipeline = [dict(type='LoadImage'), dict(type='LoadTaskAnnotations'), dict(type='PackTaskInputs')]
test_dataloader = dict(dataset=dict(type='MultiTaskDataset', sources=dict(
    cls=dict(tasks=['cls'], dataset=dict(type='ImageNetDataset', data_root='x',
                                         pipeline=pipeline)))))
"""


def metafile(weights='null', sha256='null', name='tiny_two-task', extra=''):
    return f"""
Collections:
  - Name: Tiny
Models:
  - Name: {name}
    In Collection: Tiny
    Config: configs/tiny/tiny.py
    Metadata:
      Tasks: [cls, depth]
      Parameters: 30000
    Results:
      - Task: cls
        Dataset: nowhere
        Metrics: {{top1: 10.0}}
    Weights: {weights}
    Sha256: {sha256}
    Reproduce: python tools/train.py configs/tiny/tiny.py
  - Name: tiny_other
    Config: configs/tiny/tiny.py
    Results:
      - Task: depth
        Metrics: {{rmse: 1.0}}
{extra}"""


@pytest.fixture
def configs(tmp_path, monkeypatch):
    """A configs folder with one family, 'tiny'; returns a function writing its metafile."""
    folder = tmp_path / 'repo' / 'configs' / 'tiny'
    folder.mkdir(parents=True)
    (folder / 'tiny.py').write_text(CONFIG)
    monkeypatch.setattr(model_index, 'CONFIGS_DIR', str(tmp_path / 'repo' / 'configs'))
    monkeypatch.setenv('MODZOO_HOME', str(tmp_path / 'home'))

    def write(text=None, **kwargs):
        (folder / 'metafile.yml').write_text(text or metafile(**kwargs))
    write()
    return write


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serves tmp_path/'www' over HTTP on 127.0.0.1."""
    for name in ('http_proxy', 'HTTP_PROXY', 'all_proxy', 'ALL_PROXY'):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / 'www').mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path / 'www'))
    server = ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05, ), daemon=True).start()
    yield f'http://127.0.0.1:{server.server_port}'
    server.shutdown()
    server.server_close()


def test_list_and_find_models(configs):
    assert modzoo.list_models() == ['tiny_other', 'tiny_two-task']
    assert modzoo.list_models('tiny_t*') == ['tiny_two-task']
    assert modzoo.list_models(task='depth') == ['tiny_other', 'tiny_two-task']
    assert zoo.find_model('tiny_other').tasks == ['cls', 'depth']  # the config's heads
    with pytest.raises(KeyError, match="'tiny_two_task' is not a model of the zoo; closest: "
                                       'tiny_two-task'):
        modzoo.get_model('tiny_two_task')


@pytest.mark.parametrize('text, match', [
    (metafile(weights='work_dirs/x.pth'), r"Models\[0\] \('tiny_two-task'\): Weights "
                                          'work_dirs/x.pth must be a URL'),
    (metafile().replace('configs/tiny/tiny.py', 'configs/tiny/gone.py'),
     'Config configs/tiny/gone.py does not exist'),
    (metafile(extra='  - Name: tiny_other\n    Config: configs/tiny/tiny.py\n'),
     "'tiny_other' is in both"),
    ('Models: {}', 'must have a `Models:` list'),
    (metafile(sha256='12345678'), "Sha256 12345678 must be 8 to 64 lower-case hex digits, quoted"),
])
def test_bad_metafiles_are_named(configs, text, match):
    configs(text)
    with pytest.raises(ValueError, match=match):
        modzoo.list_models()


def test_get_model_builds_the_config_with_overrides(configs):
    model = modzoo.get_model('tiny_two-task', heads=dict(cls=dict(num_classes=5)))
    assert not model.training and model.cfg.model.heads.cls.num_classes == 5
    assert model.heads.cls.fc.out_features == 5 and model.tasks == ('cls', 'depth')


def test_pretrained_true_fetches_and_verifies_the_metafile_weights(configs, server, tmp_path):
    source = modzoo.get_model('tiny_two-task')
    path = tmp_path / 'www' / 'tiny.safetensors'
    save_checkpoint_atomic(source.state_dict(), str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    configs(weights=f'{server}/tiny.safetensors', sha256=digest)
    model = modzoo.get_model('tiny_two-task', pretrained=True)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)
    # zoo names resolve everywhere weights are read: the hub, and mmengine's loader
    assert resolve('tiny_two-task') == resolve('modzoo://tiny_two-task')
    assert set(_load_checkpoint('modzoo://tiny_two-task')) == set(source.state_dict())

    configs(weights=f'{server}/tiny.safetensors', sha256='f' * 64)
    with pytest.raises(ValueError, match=f'{server}/tiny.safetensors: sha256 {digest}'):
        modzoo.get_model('tiny_two-task', pretrained=True)


def test_pretrained_true_without_weights_names_the_command(configs):
    with pytest.raises(FileNotFoundError, match='python tools/train.py configs/tiny/tiny.py'):
        modzoo.get_model('tiny_two-task', pretrained=True)
    with pytest.raises(WeightsNotFoundError, match='no checkpoint in work_dirs/tiny_two-task/; '
                                                   'make it with: python tools/train.py'):
        resolve('tiny_two-task')


def test_a_zoo_name_without_weights_reads_the_newest_local_run(configs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / 'work_dirs' / 'tiny_two-task'
    source = modzoo.get_model('tiny_two-task')
    save_checkpoint_atomic(dict(state_dict=source.state_dict()), str(run / 'iter_4.pth'))
    save_checkpoint_atomic(dict(state_dict={}), str(run / 'iter_2.pth'))
    (run / 'last_checkpoint').write_text(str(run / 'iter_4.pth'))
    assert resolve('modzoo://tiny_two-task') == str(run / 'iter_4.pth')
    model = modzoo.get_model('tiny_two-task', pretrained=True)
    torch.testing.assert_close(model.state_dict(), source.state_dict())
    (run / 'last_checkpoint').unlink()
    os.utime(run / 'iter_2.pth', (0, 2e9))  # the newest file when no pointer says otherwise
    assert os.path.samefile(resolve('modzoo://tiny_two-task'), run / 'iter_2.pth')


def test_mismatched_checkpoint_lists_keys_by_module_unless_not_strict(configs, tmp_path):
    source = modzoo.get_model('tiny_two-task').state_dict()
    state = {f'module.{k}': v for k, v in source.items() if not k.startswith('heads.depth.')}
    state['module.head.weight'] = torch.zeros(3, 32)
    state['module.heads.cls.fc.weight'] = torch.zeros(7, 32)
    path = tmp_path / 'ckpt.pth'
    torch.save(dict(state_dict=state, meta=dict(epoch=1)), path)
    with pytest.raises(zoo.CheckpointMismatchError) as error:
        modzoo.get_model('tiny_two-task', pretrained=str(path))
    message = str(error.value)
    assert 'missing keys (in the model, not in the checkpoint):\n  heads.depth: ' in message
    assert 'projs.#.conv.weight (x2)' in message
    assert 'unexpected keys (in the checkpoint, not in the model):\n  head: weight' in message
    assert 'shape mismatches:\n  heads.cls: fc.weight (7, 32) vs model (3, 32)' in message
    assert 'strict=False' in message
    model = modzoo.get_model('tiny_two-task', pretrained=str(path), strict=False)
    torch.testing.assert_close(model.backbone.pos_embed, source['backbone.pos_embed'])
    assert not torch.equal(model.heads.cls.fc.weight, torch.zeros(3, 32))


def test_inference_on_files_and_arrays(configs, tmp_path):
    model = modzoo.get_model('tiny_two-task')
    image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    mmcv.imwrite(image[..., ::-1], str(tmp_path / 'img.png'))  # cv2 writes BGR
    from_file = modzoo.inference(model, str(tmp_path / 'img.png'))
    assert from_file.pred_score.shape == (3, ) and from_file.pred_depth.shape == (32, 48)
    from_arrays = modzoo.inference(model, [image, image[:16]], tasks=['depth'])
    assert len(from_arrays) == 2 and 'pred_score' not in from_arrays[0]
    torch.testing.assert_close(from_arrays[0].pred_depth, from_file.pred_depth)
    assert from_arrays[1].pred_depth.shape == (16, 48)
    with pytest.raises(KeyError, match=r"\['normals'\] are not tasks of the model"):
        modzoo.inference(model, image, tasks=['normals'])
    with pytest.raises(ValueError, match=r'RGB uint8 \[H, W, 3\], got float32 \[32, 48\]'):
        modzoo.inference(model, image[..., 0].astype(np.float32))


def test_the_repository_metafiles_are_valid():
    names = modzoo.list_models()
    assert 'vit-tiny_synth_mtl' in names
    info = zoo.find_model('vit-tiny_synth_mtl')
    assert info.tasks == ['cls', 'semseg', 'depth', 'multilabel']
