"""Checkpoint loading refuses code in pickles on every entry point; saves are atomic."""
import functools
import os
import pickle
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from mmengine.fileio import get_file_backend
from mmengine.model import BaseModel
from mmengine.runner import Runner, load_checkpoint
from mmengine.runner.checkpoint import _load_checkpoint
from torch import nn
from torch.utils.data import Dataset

from modzoo.engine.checkpoint import (MMENGINE_MESSAGE_HUB_GLOBALS, AtomicLocalBackend,
                                      UnsafeCheckpointError, load_from_local,
                                      save_checkpoint_atomic, use_safe_checkpoints, write_atomic)


@pytest.fixture(autouse=True)
def safe_checkpoints():
    """These tests check mmengine's entry points once modzoo's tools have opted in."""
    use_safe_checkpoints()


class ToyModel(BaseModel):
    """A linear regressor, y = w . x + b."""

    def __init__(self, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, targets, mode='tensor'):
        """inputs: [B, 2], targets: [B]."""
        pred = self.linear(inputs).squeeze(-1)
        return dict(loss=((pred - targets) ** 2).mean()) if mode == 'loss' else pred


class ToyData(Dataset):

    def __init__(self):
        gen = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(8, 2, generator=gen)
        self.targets = self.inputs.sum(1)

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, index):
        return dict(inputs=self.inputs[index], targets=self.targets[index])


def make_runner(work_dir, name, max_epochs, checkpoint_hook='SafeCheckpointHook', **kwargs):
    """A Runner that trains ToyModel with SGD + momentum and a step LR schedule, so a resume
    must restore the weights, the optimizer state and the scheduler state to match."""
    torch.manual_seed(0)
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        experiment_name=name,
        default_scope='modzoo',
        train_dataloader=dict(dataset=ToyData(), batch_size=4, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        # `end` set: by default mmengine ends a scheduler at the run's max_epochs
        param_scheduler=dict(type='MultiStepLR', milestones=[2], gamma=0.1, end=3),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type=checkpoint_hook, interval=1, max_keep_ckpts=1)),
        **kwargs)


class WritesSentinel:
    """A pickle payload: unpickling it creates the file ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return exec, (f'open({self.path!r}, "w").close()', )


@pytest.fixture
def malicious(tmp_path):
    """(path of a weights file carrying a WritesSentinel payload, the sentinel path)."""
    sentinel = tmp_path / 'SENTINEL'
    pickle.loads(pickle.dumps(WritesSentinel(sentinel)))  # the payload is live ...
    assert sentinel.exists()
    sentinel.unlink()  # ... and is armed again
    path = tmp_path / 'weights' / 'evil.pth'
    path.parent.mkdir()
    torch.save(dict(state_dict=ToyModel().state_dict(), meta=WritesSentinel(sentinel)), path)
    return path, sentinel


@pytest.fixture
def http_server(tmp_path, monkeypatch):
    """Serves tmp_path/'weights' at the returned base URL (downloads are cached in the test's
    own MODZOO_HOME, see tests/conftest.py)."""
    for name in ('http_proxy', 'HTTP_PROXY', 'all_proxy', 'ALL_PROXY'):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / 'weights').mkdir(exist_ok=True)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path / 'weights'))
    server = ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05, ), daemon=True).start()
    yield f'http://127.0.0.1:{server.server_port}'
    server.shutdown()
    server.server_close()


def _load_via_pretrained_init(path):
    model = ToyModel(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()


def _resume_runner(path):
    runner = make_runner(path.parent / 'work', 'resume_evil', max_epochs=1,
                         load_from=str(path), resume=True)
    runner.train()


def _load_from_runner(path):
    runner = make_runner(path.parent / 'work', 'load_evil', max_epochs=1, load_from=str(path))
    runner.train()


ENTRY_POINTS = {
    'modzoo loader': lambda path: load_from_local(str(path)),
    'mmengine load_checkpoint': lambda path: load_checkpoint(ToyModel(), str(path)),
    'init_cfg Pretrained': _load_via_pretrained_init,
    'Runner resume': _resume_runner,
    'Runner load_from': _load_from_runner,
}


@pytest.mark.parametrize('entry', ENTRY_POINTS)
def test_malicious_pickle_is_refused_and_never_runs(malicious, entry):
    path, sentinel = malicious
    with pytest.raises(UnsafeCheckpointError, match=f'{re.escape(str(path))}.*builtins.exec'):
        ENTRY_POINTS[entry](path)
    assert not sentinel.exists()


def test_malicious_pickle_over_http_is_refused(malicious, http_server):
    path, sentinel = malicious
    with pytest.raises(UnsafeCheckpointError, match='evil.pth.*builtins.exec'):
        _load_checkpoint(f'{http_server}/evil.pth')
    assert not sentinel.exists()


def test_pickle_named_safetensors_is_not_unpickled(malicious):
    path, sentinel = malicious
    disguised = path.with_suffix('.safetensors')
    path.rename(disguised)
    with pytest.raises(RuntimeError, match=f'{re.escape(str(disguised))}.*not a readable'):
        load_checkpoint(ToyModel(), str(disguised))
    assert not sentinel.exists()


@pytest.mark.parametrize('scheme', ['torchvision://resnet50', 'open-mmlab://resnet50_v1c'])
def test_schemes_that_mmengine_unpickles_unsafely_are_refused(scheme):
    with pytest.raises(ValueError, match='weights_only=False.*https://'):
        _load_checkpoint(scheme)


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_weights_load_through_mmengine_and_http(tmp_path, http_server, suffix):
    source = ToyModel()
    save_checkpoint_atomic(source.state_dict(), str(tmp_path / 'weights' / f'w{suffix}'))
    for location in (tmp_path / 'weights' / f'w{suffix}', f'{http_server}/w{suffix}'):
        target = ToyModel()
        load_checkpoint(target, str(location), map_location='cpu', strict=True)
        for name, value in source.state_dict().items():
            assert torch.equal(target.state_dict()[name], value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_checkpoint(ToyModel(), str(tmp_path / 'nope.pth'))


def test_resume_continues_exactly_and_file_holds_only_plain_types(tmp_path):
    straight = make_runner(tmp_path / 'straight', 'straight', max_epochs=3)
    straight.train()

    first = make_runner(tmp_path / 'resumed', 'first', max_epochs=2)
    first.train()
    last = (tmp_path / 'resumed' / 'last_checkpoint').read_text()
    assert last == str(tmp_path / 'resumed' / 'epoch_2.pth')
    assert not (tmp_path / 'resumed' / 'epoch_1.pth').exists()  # max_keep_ckpts=1
    assert torch.serialization.get_unsafe_globals_in_checkpoint(last) == []

    second = make_runner(tmp_path / 'resumed', 'second', max_epochs=3, resume=True)
    second.train()
    for name, value in straight.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[name], value)
    # the loss log of epochs 1-2 came back from the file: 2 iterations per epoch
    resumed_log = second.message_hub.get_scalar('train/loss').data[0]
    straight_log = straight.message_hub.get_scalar('train/loss').data[0]
    assert len(resumed_log) == 6
    assert resumed_log.tolist() == pytest.approx(straight_log.tolist())


def test_mmengine_checkpoint_is_refused_with_hint(tmp_path):
    make_runner(tmp_path, 'plain_hook', max_epochs=1, checkpoint_hook='CheckpointHook').train()
    path = str(tmp_path / 'epoch_1.pth')
    refused = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    assert set(refused) <= set(MMENGINE_MESSAGE_HUB_GLOBALS)
    assert {'builtins.getattr', 'mmengine.logging.history_buffer.HistoryBuffer'} <= set(refused)
    with pytest.raises(UnsafeCheckpointError, match='builtins.getattr.*SafeCheckpointHook'):
        load_from_local(path)


class Unpicklable:

    def __reduce__(self):
        raise RuntimeError('interrupted while pickling')


def _files(folder):
    return sorted(path.name for path in folder.iterdir())


def test_interrupted_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / 'model.pth'
    save_checkpoint_atomic(dict(weight=torch.ones(3)), str(path))
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match='interrupted while pickling'):
        save_checkpoint_atomic(dict(weight=torch.zeros(3), bad=Unpicklable()), str(path))
    # the bytes are in the temp file, then the fsync before the rename fails
    monkeypatch.setattr(os, 'fsync', lambda fd: (_ for _ in ()).throw(OSError('disk full')))
    with pytest.raises(OSError, match='disk full'):
        get_file_backend(str(path)).put(b'new bytes', str(path))
    with pytest.raises(OSError, match='disk full'):
        write_atomic(str(path), b'new bytes')
    assert path.read_bytes() == before
    assert _files(tmp_path) == ['model.pth']
    assert torch.equal(load_from_local(str(path))['weight'], torch.ones(3))


@pytest.mark.parametrize('failing_write', ['checkpoint', 'last_checkpoint'])
def test_interrupted_runner_save_keeps_previous_checkpoint(tmp_path, monkeypatch, failing_write):
    make_runner(tmp_path, f'before_{failing_write}', max_epochs=1).train()
    epoch_1 = (tmp_path / 'epoch_1.pth').read_bytes()
    assert isinstance(get_file_backend(str(tmp_path)), AtomicLocalBackend)

    real_replace = os.replace

    def replace(src, dst):
        target = 'epoch_2.pth' if failing_write == 'checkpoint' else 'last_checkpoint'
        if str(dst).endswith(target):
            raise KeyboardInterrupt  # the process is stopped mid-save
        real_replace(src, dst)

    monkeypatch.setattr(os, 'replace', replace)
    with pytest.raises(KeyboardInterrupt):
        make_runner(tmp_path, f'interrupted_{failing_write}', max_epochs=2, resume=True).train()
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'epoch_1.pth')
    assert (tmp_path / 'epoch_1.pth').read_bytes() == epoch_1  # kept although max_keep_ckpts=1
    assert not [name for name in _files(tmp_path) if name.endswith('.tmp')]
    assert (tmp_path / 'epoch_2.pth').exists() == (failing_write == 'last_checkpoint')
