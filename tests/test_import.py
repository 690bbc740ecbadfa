"""Importing modzoo changes nothing other OpenMMLab code relies on; the zoo index is light.

Each check runs in a fresh interpreter: the test process itself has long imported torch and
opted in to modzoo's checkpoint loaders.
"""
import subprocess
import sys
import textwrap

SCHEMES_KEPT = """
from mmengine.fileio import LocalBackend, get_file_backend
from mmengine.runner import checkpoint as ckpt
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint

before = dict(CheckpointLoader._schemes)
import modzoo.engine, modzoo.models, modzoo.zoo  # noqa: E401,F401
modzoo.registry.MODELS.import_from_location()
after = dict(CheckpointLoader._schemes)
assert {k: v for k, v in after.items() if k in before} == before, 'a scheme was overridden'
assert sorted(set(after) - set(before)) == ['hf://', 'modzoo://', 'timm:'], sorted(after)
assert type(get_file_backend('x.pth')) is LocalBackend, get_file_backend('x.pth')
ckpt.load_url = lambda url, **kwargs: dict(url=url)  # mmengine fetches torchvision:// so
print('URL', _load_checkpoint('torchvision://resnet18')['url'])
modzoo.engine.use_safe_checkpoints()  # the explicit step modzoo's tools take
assert type(get_file_backend('x.pth')) is modzoo.engine.AtomicLocalBackend
try:
    _load_checkpoint('torchvision://resnet18')
except ValueError as error:
    print('REFUSED', error)
"""

INDEX_ALONE = """
import sys, time
start = time.perf_counter()
import modzoo
names = modzoo.list_models()
info = modzoo.find_model('vit-tiny_synth_mtl')
heavy = sorted(m for m in ('torch', 'timm', 'mmengine', 'numpy') if m in sys.modules)
print(len(names), info.name, heavy)
"""


def run(code: str) -> str:
    result = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_modzoo_keeps_mmengine_schemes_and_backend():
    out = [line for line in run(SCHEMES_KEPT).splitlines() if line.startswith(('URL', 'REF'))]
    assert out[0].startswith('URL https://download.pytorch.org/models/resnet18')
    assert out[1].startswith("REFUSED cannot load 'torchvision://resnet18'")


def test_zoo_index_imports_no_torch():
    count, name, heavy = run(INDEX_ALONE).split(' ', 2)
    assert int(count) > 10 and name == 'vit-tiny_synth_mtl' and heavy.strip() == '[]'
