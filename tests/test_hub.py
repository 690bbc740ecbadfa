"""modzoo.hub against an HTTP server on 127.0.0.1 and a local Hugging Face cache."""
import hashlib
import importlib.util
import pickle
import re
import runpy
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub
import pytest
import torch
from mmengine.runner import load_checkpoint
from mmengine.runner.checkpoint import _load_checkpoint
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn
from torch import nn

from modzoo.engine.checkpoint import UnsafeCheckpointError, use_safe_checkpoints
from modzoo.hub import DownloadError, HashMismatchError, WeightsNotFoundError, cache_path, resolve
from modzoo.models.backbones.vit import ViT

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location('download_tool', ROOT / 'tools' / 'download.py')
download_tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(download_tool)


class WeightsServer(BaseHTTPRequestHandler):
    """Serves ``server.files`` ({url path: bytes}); logs (path, Range header) of each GET.

    ``server.honour_range`` False ignores Range; ``server.cut`` sends only that many bytes of
    the next response (with the full Content-Length) and closes the connection.
    """

    def do_GET(self):
        server = self.server
        server.log.append((self.path, self.headers.get('Range')))
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r'bytes=(\d+)-', self.headers.get('Range') or '')
        if match and server.honour_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header('Content-Range', f'bytes */{len(data)}')
                self.end_headers()
                return
            self.send_response(206)
            self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if server.cut is not None:
            body, server.cut = body[:server.cut], None
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def home(tmp_path, monkeypatch):
    """MODZOO_HOME in tmp_path, online, no proxies."""
    monkeypatch.setenv('MODZOO_HOME', str(tmp_path / 'home'))
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    for name in ('http_proxy', 'HTTP_PROXY', 'all_proxy', 'ALL_PROXY'):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / 'home'


@pytest.fixture
def server(home):
    server = ThreadingHTTPServer(('127.0.0.1', 0), WeightsServer)
    server.files, server.log, server.honour_range, server.cut = {}, [], True, None
    threading.Thread(target=server.serve_forever, args=(0.05, ), daemon=True).start()
    server.url = f'http://127.0.0.1:{server.server_port}'
    yield server
    server.shutdown()
    server.server_close()


def weights_bytes(tmp_path, seed=0, size=4096):
    """The bytes of a safetensors file of one random [size] tensor."""
    path = tmp_path / f'src{seed}.safetensors'
    save_file({'w': torch.randn(size, generator=torch.Generator().manual_seed(seed))}, path)
    return path.read_bytes()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def serve(server, name, data):
    server.files[f'/{name}'] = data
    return f'{server.url}/{name}'


def cache_files(home):
    folder = home / 'checkpoints'
    return sorted(str(p.relative_to(folder)) for p in folder.rglob('*') if p.is_file()) \
        if folder.exists() else []


def test_download_then_cache_hit_without_a_request(tmp_path, server, home):
    data = weights_bytes(tmp_path)
    url = serve(server, f'models/w-{sha(data)[:8]}.safetensors', data)
    path = resolve(url, progress=False)
    assert path == cache_path(url) == str(home / 'checkpoints' / f'127.0.0.1:{server.server_port}'
                                          / 'models' / f'w-{sha(data)[:8]}.safetensors')
    assert Path(path).read_bytes() == data
    assert server.log == [(f'/models/w-{sha(data)[:8]}.safetensors', None)]
    assert resolve(url, sha256=sha(data), progress=False) == path
    assert len(server.log) == 1  # the cache answered


def test_partial_file_resumes_with_a_range_request(tmp_path, server, home):
    data = weights_bytes(tmp_path, size=50_000)
    url = serve(server, 'w.safetensors', data)
    server.cut = 70_000  # the connection breaks after 70 kB
    with pytest.raises(DownloadError, match='w.safetensors.*run again to resume'):
        resolve(url, sha256=sha(data), progress=False)
    part = Path(cache_path(url) + '.part')
    assert part.stat().st_size == 70_000 and not Path(cache_path(url)).exists()
    path = resolve(url, sha256=sha(data), progress=False)
    assert Path(path).read_bytes() == data and not part.exists()
    assert server.log[-1] == ('/w.safetensors', 'bytes=70000-')


def test_server_that_ignores_range_restarts_the_file(tmp_path, server, home):
    data = weights_bytes(tmp_path)
    url = serve(server, 'w.safetensors', data)
    server.honour_range = False
    part = Path(cache_path(url) + '.part')
    part.parent.mkdir(parents=True)
    part.write_bytes(b'stale bytes of another file')
    assert Path(resolve(url, sha256=sha(data), progress=False)).read_bytes() == data


def test_sha_mismatch_deletes_the_download_and_names_url_and_hashes(tmp_path, server, home):
    data = weights_bytes(tmp_path)
    wrong = sha(b'something else')
    url = serve(server, f'w-{wrong[:8]}.safetensors', data)  # the name promises another file
    with pytest.raises(HashMismatchError, match=f'{re.escape(url)}: sha256 {sha(data)} does not '
                                                f'match the expected {wrong[:8]}'):
        resolve(url, progress=False)
    with pytest.raises(HashMismatchError, match=wrong):
        resolve(serve(server, 'v.safetensors', data), sha256=wrong, progress=False)
    assert cache_files(home) == []


def test_corrupt_cached_file_is_fetched_again(tmp_path, server, home):
    data = weights_bytes(tmp_path)
    url = serve(server, 'w.safetensors', data)
    Path(cache_path(url)).parent.mkdir(parents=True)
    Path(cache_path(url)).write_bytes(b'truncated')
    assert Path(resolve(url, sha256=sha(data)[:16], progress=False)).read_bytes() == data


def test_http_errors_name_the_url(server):
    with pytest.raises(DownloadError, match=f'{re.escape(server.url)}/nope.pth: HTTP 404'):
        resolve(f'{server.url}/nope.pth', progress=False)
    closed = ThreadingHTTPServer(('127.0.0.1', 0), WeightsServer)
    port = closed.server_port
    closed.server_close()
    url = f'http://127.0.0.1:{port}/w.pth'
    with pytest.raises(DownloadError, match=f'cannot reach {re.escape(url)}.*put it at '
                                            f'{re.escape(cache_path(url))}'):
        resolve(url, progress=False)


def test_offline_says_which_file_is_missing_and_where_to_put_it(server, monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    url = f'{server.url}/w-0123abcd.pth'
    with pytest.raises(WeightsNotFoundError, match=f'{re.escape(url)} is not cached and '
                                                   f'HF_HUB_OFFLINE is set: put the file at '
                                                   f'{re.escape(cache_path(url))} '
                                                   r'\(sha256 0123abcd'):
        resolve(url)
    assert server.log == []


def test_local_files_are_checked_and_bad_input_is_named(tmp_path, home):
    data = weights_bytes(tmp_path)
    good = tmp_path / f'w-{sha(data)[:10]}.safetensors'
    good.write_bytes(data)
    assert resolve(str(good)) == str(good)
    bad = tmp_path / 'w-deadbeef.safetensors'
    bad.write_bytes(data)
    with pytest.raises(HashMismatchError, match='w-deadbeef.safetensors'):
        resolve(str(bad))
    with pytest.raises(WeightsNotFoundError, match='nowhere.pth'):
        resolve(str(tmp_path / 'nowhere.pth'))
    with pytest.raises(ValueError, match="sha256 'xyz' must be 8 to 64 hex digits"):
        resolve(str(good), sha256='xyz')
    with pytest.raises(ValueError, match='hf://ORG/REPO/FILE'):
        resolve('hf://only-org/file.pth')


class Sentinel:
    """A pickle payload: unpickling it creates the file ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return exec, (f'open({self.path!r}, "w").close()', )


def test_weights_with_a_pickle_payload_are_refused(tmp_path, server):
    use_safe_checkpoints()  # http:// through mmengine's loader: modzoo's once a tool opts in
    sentinel = tmp_path / 'SENTINEL'
    evil = tmp_path / 'evil.pth'
    torch.save(dict(state_dict=nn.Linear(2, 1).state_dict(), meta=Sentinel(sentinel)), evil)
    url = serve(server, 'evil.pth', evil.read_bytes())
    with pytest.raises(UnsafeCheckpointError, match='evil.pth.*builtins.exec'):
        _load_checkpoint(url)
    assert Path(cache_path(url)).exists() and not sentinel.exists()
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(nn.Linear(2, 1), url)
    assert not sentinel.exists()


def fake_hf_cache(root, repo_id, files, commit='0' * 40):
    """A huggingface_hub cache folder holding ``files`` ({name: bytes}) of ``repo_id``."""
    repo = root / f'models--{repo_id.replace("/", "--")}'
    (repo / 'refs').mkdir(parents=True)
    (repo / 'refs' / 'main').write_text(commit)
    for name, data in files.items():
        (repo / 'snapshots' / commit / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / 'snapshots' / commit / name).write_bytes(data)
    return repo / 'snapshots' / commit


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline (nothing may leave the machine)."""
    cache = tmp_path / 'hf'
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_CACHE', str(cache))
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    return cache


def test_hf_files_resolve_through_the_huggingface_cache(tmp_path, hf_cache):
    linear = nn.Linear(2, 1)
    save_file(linear.state_dict(), tmp_path / 'l.safetensors')
    data = (tmp_path / 'l.safetensors').read_bytes()
    snapshot = fake_hf_cache(hf_cache, 'org/repo', {'sub/l.safetensors': data})
    assert resolve('hf://org/repo/sub/l.safetensors', sha256=sha(data)) == \
        str(snapshot / 'sub' / 'l.safetensors')
    target = nn.Linear(2, 1)
    load_checkpoint(target, 'hf://org/repo/sub/l.safetensors', strict=True)
    torch.testing.assert_close(target.weight, linear.weight)
    with pytest.raises(HashMismatchError, match='hf://org/repo/sub/l.safetensors'):
        resolve('hf://org/repo/sub/l.safetensors', sha256='deadbeef')
    with pytest.raises(WeightsNotFoundError, match=r'hf://org/repo/missing.pth is not in the '
                                                   r'Hugging Face cache .*HF_HUB_OFFLINE.*'
                                                   r'hf download org/repo missing.pth'):
        resolve('hf://org/repo/missing.pth')


def test_timm_weights_initialise_a_vit_through_init_cfg(hf_cache, tmp_path):
    """`timm:NAME` -> the model.safetensors of timm's HF repo, resampled by ViT's loader."""
    torch.manual_seed(0)
    source = VisionTransformer(img_size=32, patch_size=16, embed_dim=192, depth=12, num_heads=3,
                               num_classes=10)
    save_file(source.state_dict(), tmp_path / 'vit.safetensors')
    fake_hf_cache(hf_cache, 'timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k',
                  {'model.safetensors': (tmp_path / 'vit.safetensors').read_bytes()})
    vit = ViT('tiny', img_size=64, patch_size=8, init_cfg=dict(
        type='Pretrained', checkpoint='timm:vit_tiny_patch16_224.augreg_in21k_ft_in1k'))
    vit.init_weights()
    expected = checkpoint_filter_fn(source.state_dict(), vit)
    for key in ('pos_embed', 'patch_embed.proj.weight', 'blocks.11.mlp.fc2.bias'):
        torch.testing.assert_close(vit.state_dict()[key], expected[key])
    with pytest.raises(KeyError, match='vit_tiny_patch16_224.augreg_in21k_ft_in1k'):
        resolve('timm:vit_tiny_patch16_224.augreg_in21k_ft_in1')


def test_runner_load_from_accepts_hub_names(tmp_path, hf_cache):
    from mmengine.runner import Runner
    linear = nn.Linear(2, 1)
    save_file({'weight': linear.weight, 'bias': linear.bias}, tmp_path / 'l.safetensors')
    fake_hf_cache(hf_cache, 'org/repo',
                  {'l.safetensors': (tmp_path / 'l.safetensors').read_bytes()})

    class Toy(nn.Linear):
        def __init__(self):
            super().__init__(2, 1)

    runner = Runner(model=Toy(), work_dir=str(tmp_path / 'work'), default_scope='modzoo',
                    load_from='hf://org/repo/l.safetensors')
    runner.load_or_resume()
    torch.testing.assert_close(runner.model.weight, linear.weight)


def test_download_tool_prints_the_path_last_and_fails_with_status_1(
        tmp_path, server, capsys, monkeypatch):
    data = weights_bytes(tmp_path)
    url = serve(server, 'w.safetensors', data)
    assert download_tool.main([url, '--sha256', sha(data)[:8], '--quiet']) == 0
    assert capsys.readouterr().out.splitlines()[-1] == cache_path(url)
    assert download_tool.main([f'{server.url}/missing.pth', '--quiet']) == 1
    assert f'error: cannot download {server.url}/missing.pth: HTTP 404' in capsys.readouterr().err
    monkeypatch.setattr(sys, 'argv', ['download.py', str(tmp_path / 'gone.pth')])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(ROOT / 'tools' / 'download.py'), run_name='__main__')
    assert exit_info.value.code == 1
    assert f"error: checkpoint file '{tmp_path / 'gone.pth'}' does not exist" in \
        capsys.readouterr().err
