"""tools/analysis/benchmark_moe.py: its baselines compute what ``MoEMlp`` computes."""
import importlib.util
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from modzoo.models.layers.moe_mlp import MoEMlp

SCRIPT = Path(__file__).resolve().parents[3] / 'tools' / 'analysis' / 'benchmark_moe.py'
spec = importlib.util.spec_from_file_location('benchmark_moe', SCRIPT)
benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark)


def _outputs_and_grads(module, x):
    out = module(x)
    out = out[0] if isinstance(out, tuple) else out
    params = [p for p in module.parameters() if p.requires_grad]
    return [out] + list(torch.autograd.grad(out.square().sum(), [x] + params))


def test_reference_and_padded_designs_match_moe_mlp():
    torch.manual_seed(0)
    moe = MoEMlp(16, num_experts=4, top_k=2, hidden_dims=32, router_init_std=1.0)
    x = torch.randn(2, 9, 16, requires_grad=True)
    expected = _outputs_and_grads(moe, x)
    for design in (benchmark.ReferenceMoEMlp(moe), benchmark.PaddedBmmMoEMlp(moe),
                   benchmark.BiasPerPairMoEMlp(moe)):
        for got, want in zip(_outputs_and_grads(design, x), expected):
            assert torch.allclose(got, want, atol=1e-5)


def test_mlp_benchmark_runs_on_tiny_sizes():
    result = benchmark.benchmark_mlp(torch.device('cpu'), nullcontext, repeats=2, batch=2,
                                     tokens=64, dims=64, num_experts=4, top_k=2, hidden=256)
    assert set(result['median_ms']) == {'moe', 'dense', 'reference', 'padded_bmm',
                                        'bias_per_pair'}
    assert result['ratio_vs_dense'] > 0 and result['speedup_vs_loop'] > 0
    assert all(mb > 0 for mb in result['peak_memory_mb'].values())


def test_gemm_floor_times_the_six_products_of_an_mlp_step():
    """``products`` computes a linear two-layer MLP's forward and its gradients."""
    torch.manual_seed(0)
    x, w1, w2 = torch.randn(5, 4), torch.randn(4, 6), torch.randn(6, 4)
    dy = torch.randn(5, 4)
    h = x @ w1
    out = {key: torch.empty(shape) for key, shape in
           dict(h=(5, 6), y=(5, 4), dh=(5, 6), dw2=(6, 4), dx=(5, 4), dw1=(4, 6)).items()}
    benchmark.products([x], [w1], [h], [w2], [dy], [out])()
    leaves = [t.clone().requires_grad_() for t in (x, w1, w2)]
    y = leaves[0] @ leaves[1] @ leaves[2]
    dx, dw1, dw2 = torch.autograd.grad(y, leaves, dy)
    for key, want in dict(y=y, dx=dx, dw1=dw1, dw2=dw2, h=h).items():
        torch.testing.assert_close(out[key], want.detach())
    ratio = benchmark.gemm_floor(torch.device('cpu'), repeats=2, tokens=32, dims=16,
                                 num_experts=4, top_k=2, hidden=32)
    assert ratio > 0


def test_mlp_benchmark_in_bf16_autocast_on_cpu():
    def autocast():
        return torch.autocast('cpu', dtype=torch.bfloat16)
    result = benchmark.benchmark_mlp(torch.device('cpu'), autocast, repeats=2, batch=2,
                                     tokens=64, dims=64, num_experts=4, top_k=2, hidden=256,
                                     floor_dtype=torch.bfloat16, clock=time.process_time)
    assert result['ratio_vs_dense'] > 0 and result['bias_fold_speedup'] > 0
