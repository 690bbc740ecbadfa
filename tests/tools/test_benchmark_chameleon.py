"""tools/analysis/benchmark_chameleon.py: the line fit and one in-process measurement."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / 'tools' / 'analysis' / 'benchmark_chameleon.py'
spec = importlib.util.spec_from_file_location('benchmark_chameleon', SCRIPT)
benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark)


def test_fit_recovers_a_line():
    fit = benchmark.fit([1, 2, 4, 8], [0.5 + 0.25 * n for n in [1, 2, 4, 8]])
    assert fit['slope'] == pytest.approx(0.25) and fit['intercept'] == pytest.approx(0.5)
    assert fit['r2'] == pytest.approx(1.0)
    assert benchmark.fit([1, 2, 3], [1., 3., 1.])['r2'] == pytest.approx(0.0)


@pytest.mark.parametrize('mode, keys', [('time', {'encode_s', 'encode_chunked_s', 'query_s'}),
                                        ('memory_chunked', {'peak_mib', 'stored_mib'})])
def test_child_measures(mode, keys, capsys):
    benchmark.main(['--child', '--n', '3', '--mode', mode, '--img-size', '32', '--repeats', '1',
                    '--chunk-size', '2', '--config', str(ROOT / benchmark.DEFAULT_CONFIG)])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out) == keys and all(v >= 0 for v in out.values())
