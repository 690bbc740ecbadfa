"""Run the command-line tools the way a user does, on small configs."""
import importlib.util
import os
import re
import subprocess
import sys

import torch

from modzoo.registry import MODELS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICKSTART = os.path.join(REPO, 'configs', 'quickstart', 'vit-tiny_synth_mtl.py')


def tiny_config(tmp_path, data_root, max_iters=6, base=QUICKSTART):
    """A config file that runs ``base`` on ``data_root`` for ``max_iters`` small steps."""
    path = tmp_path / 'tiny_cfg.py'
    path.write_text(f'''
_base_ = [{base!r}]
max_iters = {max_iters}
train_dataloader = dict(batch_size=4, num_workers=1, persistent_workers=False,
                        dataset=dict(data_root={data_root!r}))
val_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root={data_root!r}))
test_dataloader = val_dataloader
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=max_iters)]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=max_iters // 2, max_keep_ckpts=-1))
''')
    return str(path)


def run_tool(*args, nproc=None, timeout=300):
    """Run a tools/ script (or torchrun of it) from the repo root; fail with its output."""
    cmd = [sys.executable, *args] if nproc is None else [
        sys.executable, '-m', 'torch.distributed.run', '--standalone',
        f'--nproc_per_node={nproc}', *args]
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f'{cmd} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}'
    return proc


def load_tool(path):
    """A tools/ script as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3],
                                                  os.path.join(REPO, 'tools', path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_failing_tool(*args, timeout=120):
    """Run a tools/ script that must fail; return its stdout + stderr."""
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode != 0, f'{args} did not fail:\n{proc.stdout[-4000:]}'
    return proc.stdout + proc.stderr


def convert_official(script, fixture, out):
    """Run ``tools/model_converters/SCRIPT FIXTURE OUT --verify`` as a user does; return the
    differences it printed ({output name: float}), its last line and the converted model
    (built from the checkpoint's ``meta.model``, weights loaded strictly)."""
    proc = run_tool(os.path.join('tools', 'model_converters', script), str(fixture), str(out),
                    '--verify')
    diffs = {name: float(value) for name, value in
             re.findall(r'max \|(.+?) - official .+?\| = (\S+)', proc.stdout)}
    ckpt = torch.load(out, map_location='cpu', weights_only=True)
    model = MODELS.build(ckpt['meta']['model'])
    model.load_state_dict(ckpt['state_dict'])
    return diffs, proc.stdout.strip().splitlines()[-1], model
