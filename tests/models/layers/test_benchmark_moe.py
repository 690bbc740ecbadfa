"""tools/analysis/benchmark_moe.py: its baselines compute what ``MoEMlp`` computes."""
import importlib.util
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from modzoo.models.layers.moe_dispatch import plan_dispatch
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
                   benchmark.GatheredBiasMoEMlp(moe, fc2_in_combine=False),
                   benchmark.GatheredBiasMoEMlp(moe, fc2_in_combine=True)):
        for got, want in zip(_outputs_and_grads(design, x), expected):
            assert torch.allclose(got, want, atol=1e-5)


def test_moe_mlp_equals_the_layer_before_the_bias_folds():
    """The layer's output and gradients at the benchmark's widths (one image of 197 tokens,
    weights and biases of unit output scale) equal, to 1e-6 of their largest value in fp32,
    those of the layer with every pair's bias rows gathered and added (before the overhead
    work) and with only the fc1 bias gathered (before the one-hot bias)."""
    torch.manual_seed(0)
    moe = MoEMlp(384, num_experts=16, top_k=2, hidden_dims=1536)
    with torch.no_grad():
        for p in moe.parameters():
            p.normal_(0, p.shape[-2] ** -0.5 if p.ndim == 3 else 1.0)
    x = torch.randn(1, 197, 384, requires_grad=True)
    expected = _outputs_and_grads(moe, x)
    for fc2_in_combine in (False, True):
        before = benchmark.GatheredBiasMoEMlp(moe, fc2_in_combine=fc2_in_combine)
        for got, want in zip(_outputs_and_grads(before, x), expected):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6 * want.abs().max().item())


def test_mlp_benchmark_runs_on_tiny_sizes():
    result = benchmark.benchmark_mlp(torch.device('cpu'), nullcontext, repeats=2, batch=2,
                                     tokens=64, dims=64, num_experts=4, top_k=2, hidden=256)
    assert set(result['median_ms']) == {'moe', 'dense', 'reference', 'padded_bmm',
                                        'biases_gathered', 'fc1_bias_gathered',
                                        'experts_products', 'dense_products', 'layer_products'}
    assert result['ratio_vs_dense'] > 0 and result['speedup_vs_loop'] > 0
    assert result['layer_products_vs_dense'] > 0 and 'overhead_above_floor' in result
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
    plan = plan_dispatch(torch.rand(32, 4).topk(2).indices, torch.rand(32, 2), 4)
    ratios = _floor_ratios(torch.float32, plan)
    assert set(ratios) == {'gemm_floor_vs_dense', 'layer_products_vs_dense'}
    assert all(ratio > 0 for ratio in ratios.values())


def _floor_ratios(dtype, plan=None):
    steps = benchmark.floor_steps(torch.device('cpu'), tokens=32, dims=16, num_experts=4,
                                  top_k=2, hidden=32, dtype=dtype, plan=plan)
    return benchmark.floor_ratios(benchmark.time_interleaved(steps, 2, torch.device('cpu')))


def test_cast_floor_casts_the_weights_and_their_gradients():
    """With ``master`` fp32 weights, ``products`` runs on their bf16 casts and leaves the
    weight gradients in fp32 beside them, as autocast does with fp32 parameters."""
    torch.manual_seed(0)
    x, h, dy = (torch.randn(5, n, dtype=torch.bfloat16) for n in (4, 6, 4))
    w1, w2 = torch.empty(4, 6, dtype=torch.bfloat16), torch.empty(6, 4, dtype=torch.bfloat16)
    out = {key: torch.empty(shape, dtype=torch.bfloat16) for key, shape in
           dict(h=(5, 6), y=(5, 4), dh=(5, 6), dw2=(6, 4), dx=(5, 4), dw1=(4, 6)).items()}
    master = dict(w1=torch.randn(4, 6), w2=torch.randn(6, 4), dw1=torch.empty(4, 6),
                  dw2=torch.empty(6, 4))
    benchmark.products([x], [w1], [h], [w2], [dy], [out], [master])()
    assert torch.equal(w1, master['w1'].bfloat16()) and torch.equal(w2, master['w2'].bfloat16())
    assert master['dw1'].dtype == torch.float32
    assert torch.equal(master['dw1'], out['dw1'].float())
    assert torch.equal(master['dw2'], (h.t() @ dy).float())
    ratios = _floor_ratios(torch.bfloat16)
    assert set(ratios) == {'gemm_floor_vs_dense', 'gemm_cast_floor_vs_dense'}


def test_overhead_above_floor_subtracts_each_side_s_products():
    """MoE 12 = products 9 + 3 beyond them, dense 8 = products 7 + 1: (3 - 1) / 8."""
    times = dict(moe=[12.0, 6.0], experts_products=[9.0, 4.5], dense=[8.0, 4.0],
                 dense_products=[7.0, 3.5])
    assert benchmark.overhead_above_floor(times) == 0.25
    times.update(experts_products_casts=[10.0, 5.0], dense_products_casts=[7.5, 3.75])
    assert benchmark.overhead_above_floor(times) == (2 - 0.5) / 8  # the casts are floor too


def test_mlp_benchmark_in_bf16_autocast_on_cpu():
    def autocast():
        return torch.autocast('cpu', dtype=torch.bfloat16)
    result = benchmark.benchmark_mlp(torch.device('cpu'), autocast, repeats=2, batch=2,
                                     tokens=64, dims=64, num_experts=4, top_k=2, hidden=256,
                                     floor_dtype=torch.bfloat16, clock=time.process_time)
    assert result['ratio_vs_dense'] > 0 and result['bias_fold_speedup'] > 0
    assert result['fc1_bias_fold_speedup'] > 0 and result['gemm_cast_floor_vs_dense'] > 0
