"""tools/analysis/benchmark_uniperceiver.py: its retrieval figures and parameter counts."""
import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / 'tools' / 'analysis' / 'benchmark_uniperceiver.py'
spec = importlib.util.spec_from_file_location('benchmark_uniperceiver', SCRIPT)
benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark)


def test_retrieval_block_grows_linearly_with_the_candidates():
    small, large = benchmark.retrieval([40, 80], captions=5, dims=8, chunk=16)
    assert (small['texts'], large['queries']) == (200, 80 + 400)
    assert large['block_mb'] == 2 * small['block_mb']               # chunk x candidates
    assert large['full_matrix_mb'] == 4 * small['full_matrix_mb']   # what it never holds
    assert small['ns_per_pair'] > 0


def test_params_of_the_tiny_config(tmp_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    config = 'configs/uniperceiver/uniperceiver-tiny_synth.py'
    counts = benchmark.params([config])[config]
    assert counts['total_M'] > counts['active_M'] > 1
    assert set(counts['parts_M']) == {'backbone', 'global_tokens', 'proposals', 'text',
                                      'decoder', 'heads'}
    json.dumps(counts)
