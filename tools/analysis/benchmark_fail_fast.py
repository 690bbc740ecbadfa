"""Wall time of a mistyped ``type=`` through ``tools/train.py``, against bare interpreters.

``python tools/analysis/benchmark_fail_fast.py [--rounds 3]`` writes the quickstart config with
``model.heads.depth.type='DepthHaed'`` to a temp folder, runs it once with an empty
``$MODZOO_HOME`` (the full check, which fills the type-name cache), then times interleaved rounds
of ``python -c pass``, ``python -c "import torch"`` and the typo with the warm cache; prints JSON
(seconds).
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
QUICKSTART = osp.join(REPO, 'configs', 'quickstart', 'vit-tiny_synth_mtl.py')


def wall_seconds(args, env, must_fail=False):
    """Seconds ``python ARGS`` takes; it must succeed (or fail, naming the typo)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - start
    if must_fail != (proc.returncode != 0) or (must_fail and 'DepthHaed' not in proc.stderr):
        raise SystemExit(f'{args}: unexpected result\n{proc.stderr[-2000:]}')
    return round(seconds, 3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = osp.join(tmp, 'typo.py')
        with open(config, 'w') as f:
            f.write(f"_base_ = [{QUICKSTART!r}]\n"
                    "model = dict(heads=dict(depth=dict(type='DepthHaed')))\n")
        env = dict(os.environ, MODZOO_HOME=osp.join(tmp, 'home'), PYTHONPATH=REPO)
        typo = ['tools/train.py', config, '--work-dir', osp.join(tmp, 'work')]
        result = dict(typo_cold_cache=wall_seconds(typo, env, must_fail=True), rounds=[])
        for _ in range(args.rounds):
            result['rounds'].append(dict(
                load=os.getloadavg()[0], python_pass=wall_seconds(['-c', 'pass'], env),
                import_torch=wall_seconds(['-c', 'import torch'], env),
                typo_warm_cache=wall_seconds(typo, env, must_fail=True)))
    print(json.dumps(result, indent=1))


if __name__ == '__main__':
    main()
