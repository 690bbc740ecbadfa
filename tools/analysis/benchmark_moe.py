"""Training cost of the mixture-of-experts layers, against dense and reference designs.

    python tools/analysis/benchmark_moe.py [--json] [--threads N] [--repeats 15] [--vit-repeats 7]
                                          [--amp] [--mlp-only] [--clock wall|process]
                                          [--keep-freed-memory]

Times forward + backward, configurations interleaved in every round; a ratio is the median
over rounds of the ratio within the round, so slow drifts of a shared machine cancel. On a
busy machine give ``--threads 1``: on CPU every expert's matmul is its own parallel region,
and waits for a descheduled second thread then dominate; with one thread, ``--clock process``
counts the CPU time of the process, which the other jobs of a loaded machine inflate less.

MLP (E=16 experts, k=2, D=384, expert hidden 1536, 8 x 197 tokens):
  * ``ratio_vs_dense``: ``MoEMlp`` / a dense timm ``Mlp`` of hidden k * 1536 (the same
    active FLOPs); target <= 1.15.
  * ``speedup_vs_loop``: the reference design / ``MoEMlp``. The reference is Mod-Squad's
    ``parallel_experts`` (sort the pairs by expert, one ``torch.mm`` per expert slice into a
    preallocated buffer, bias added per slice, the same loops in a custom backward),
    re-implemented below on the same parameters; target >= 1.1.
  * ``padded_bmm_vs_ours``: the capacity-buffer alternative (Tutel/GShard layout: scatter
    the pairs into [E, C, D], C = the largest expert load, two ``baddbmm``) / ``MoEMlp``.
  * ``bias_fold_speedup``: ``MoEMlp`` with both expert biases gathered for every pair and
    added (the layer before its biases were folded) / ``MoEMlp``; ``fc1_bias_fold_speedup``
    the same with the fc2 bias in the combine (the layer before ``grouped_linear`` added its
    bias as a one-hot product) / ``MoEMlp``.
  * ``gemm_floor_vs_dense``: the six matrix products of the experts' forward + backward
    alone (h = x W1, y = h W2, dh = dy W2^T, dW2 = h^T dy, dx = dh W1^T, dW1 = x^T dh, one
    ``mm`` per expert on S * k / E rows, into preallocated outputs) over the dense MLP's six
    products (S rows, hidden k * 1536). No design that multiplies each expert's rows by its
    own weights gets under this ratio; ``ratio_vs_dense`` minus it is what dispatch,
    combine, routing and the per-expert bias, activation and gradient buffers add.
  * ``layer_products_vs_dense``: the same six products as the layer runs them (two
    ``grouped_linear`` calls and their autograd backward, on the layer's own routing of
    the batch: uneven loads, fresh gradient buffers) over the dense MLP's six products;
    ``ratio_vs_dense`` minus it is the layer's work outside the experts' products.
  * ``gemm_cast_floor_vs_dense`` (bf16 only): the floor plus what autocast adds to it with
    fp32 parameters, each weight cast to bf16 and its bf16 gradient back to fp32 (into
    preallocated buffers), for the experts' 2 x 16 weight matrices over the dense MLP's 2.
  * ``overhead_above_floor``: the MoE layer's time beyond its experts' products (in bf16
    products and casts) minus the dense MLP's time beyond its own, over the dense MLP's
    step, the median over rounds: what routing, dispatch, combine and the per-expert biases
    cost above what the dense MLP spends outside its products (ratio_vs_dense minus the
    floor understates it by (floor - 1) times the share of the dense step spent outside its
    products).
The floors' products are timed in the same rounds as the layers.
``--keep-freed-memory`` first calls :func:`modzoo.engine.cpu_memory.keep_freed_memory`:
glibc then reuses the freed pages of tensors over 32 MB (the experts' stacked weight
gradients) instead of page-faulting fresh ones every step.
ViT-S (12 blocks, D=384, 6 heads, 8 images of 224 px): one training step (forward, cross
entropy, backward, fused AdamW) of timm ``VisionTransformer`` with an ``MoEMlp`` (E=16, k=2,
hidden 4D/k = 768, balance and z losses on) as the MLP of every other block, over the dense
ViT-S step: ``vit_ratio``, same active FLOPs; target <= 1.25.
Peak memory of each step: CUDA ``max_memory_allocated``; CPU the torch profiler's memory
timeline (parameters, gradients, optimizer state and activations).
The CPU figures are fp32, or bf16 autocast with ``--amp`` (the GEMM floor then multiplies
bf16 operands); with a GPU the same is measured in bf16 autocast under ``cuda``.
"""
import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torch.profiler import ProfilerActivity, profile

from modzoo.engine.cpu_memory import keep_freed_memory
from modzoo.models.layers.moe_dispatch import combine, dispatch, grouped_linear, plan_dispatch
from modzoo.models.layers.moe_mlp import MoEMlp
from modzoo.models.layers.moe_router import statistics_paused


class ParallelLinear(torch.autograd.Function):
    """Mod-Squad ``parallel_experts.ParallelLinear``: [P, K] rows sorted by expert @ [E, K, N]."""

    @staticmethod
    @torch.amp.custom_fwd(device_type='cuda', cast_inputs=torch.bfloat16)
    def forward(ctx, x, expert_size, weight, bias):
        sizes = expert_size.tolist()
        out = x.new_empty(x.shape[0], weight.shape[2])
        for xi, wi, oi in zip(x.split(sizes), weight, out.split(sizes)):
            torch.mm(xi, wi, out=oi)
        for oi, bi in zip(out.split(sizes), bias):
            oi.add_(bi)
        ctx.save_for_backward(x, expert_size, weight, bias)
        return out

    @staticmethod
    @torch.amp.custom_bwd(device_type='cuda')
    def backward(ctx, grad):
        x, expert_size, weight, bias = ctx.saved_tensors
        sizes = expert_size.tolist()
        grad_x, grad_w = torch.empty_like(x), torch.empty_like(weight)
        grad_b = torch.empty_like(bias)
        groups = zip(grad.split(sizes), x.t().split(sizes, dim=1), weight,
                     grad_x.split(sizes), grad_w, grad_b)
        for gi, xi, wi, dxi, dwi, dbi in groups:
            torch.mm(gi, wi.t(), out=dxi)
            torch.mm(xi, gi, out=dwi)
            torch.sum(gi, dim=0, out=dbi)
        return grad_x, None, grad_w, grad_b


def compute_gating(k, probs, top_k_gates, top_k_indices):
    """Mod-Squad ``moe.compute_gating``: sort the (token, expert) pairs by expert."""
    gates = torch.zeros_like(probs).scatter(1, top_k_indices, top_k_gates)
    top_k_gates, top_k_experts = top_k_gates.flatten(), top_k_indices.flatten()
    nonzeros = top_k_gates.nonzero().squeeze(-1)
    _, order = top_k_experts[nonzeros].sort(0)
    expert_size = (gates > 0).long().sum(0)
    index_sorted = nonzeros[order]
    return top_k_gates[index_sorted], index_sorted.div(k, rounding_mode='trunc'), expert_size


class MoEDesign(nn.Module):
    """A dispatch design computed on the parameters (and router) of an ``MoEMlp``."""

    def __init__(self, moe):
        super().__init__()
        self.moe = moe

    def route(self, x):
        """(tokens [S, D], the router's decision) for x [..., D]."""
        tokens = x.reshape(-1, x.shape[-1])
        return tokens, self.moe.router(tokens)

    def plan(self, x):
        """(tokens [S, D], the dropless ``DispatchPlan``) for x [..., D]."""
        tokens, routing = self.route(x)
        return tokens, plan_dispatch(routing.topk_experts, routing.topk_gates,
                                     self.moe.num_experts)


class ReferenceMoEMlp(MoEDesign):
    """The Mod-Squad ``MoE.forward``."""

    def forward(self, x):
        moe, (tokens, routing) = self.moe, self.route(x)
        gates, index, expert_size = compute_gating(moe.top_k, routing.probs,
                                                   routing.topk_gates, routing.topk_experts)
        h = F.gelu(ParallelLinear.apply(tokens[index], expert_size, moe.fc1_weight,
                                        moe.fc1_bias))
        y = ParallelLinear.apply(h, expert_size, moe.fc2_weight, moe.fc2_bias)
        y = y * gates.to(y.dtype)[:, None]
        return torch.zeros_like(tokens, dtype=y.dtype).index_add(0, index, y).view(x.shape)


class PaddedBmmMoEMlp(MoEDesign):
    """Capacity-buffer dispatch: [E, C, D] and bmm."""

    def forward(self, x):
        moe, (tokens, plan) = self.moe, self.plan(x)
        capacity = int(plan.counts.max())
        starts = plan.offsets - plan.counts.to(torch.int32)
        rank = torch.arange(len(plan.expert_idx), device=x.device) - starts[plan.expert_idx]
        slot = plan.expert_idx * capacity + rank
        buffer = tokens.new_zeros(moe.num_experts * capacity, tokens.shape[-1])
        buffer = buffer.index_copy(0, slot, dispatch(tokens, plan))
        h = F.gelu(torch.baddbmm(moe.fc1_bias.unsqueeze(1),
                                 buffer.view(moe.num_experts, capacity, -1), moe.fc1_weight))
        y = torch.baddbmm(moe.fc2_bias.unsqueeze(1), h, moe.fc2_weight)
        y = y.view(-1, y.shape[-1]).index_select(0, slot)
        return combine(y, plan, tokens.shape[0]).view(x.shape)


def gathered_bias_linear(x, plan, weight, bias):
    """``grouped_linear`` with each pair's bias row gathered ([P, N]) and added."""
    y = grouped_linear(x, plan, weight)
    return y + bias.to(y.dtype).index_select(0, plan.expert_idx)


class GatheredBiasMoEMlp(MoEDesign):
    """``MoEMlp`` as it was before its biases were folded: the fc1 bias row of every pair
    gathered and added, and the fc2 bias too (``fc2_in_combine=False``: the layer before
    the combine took it) or in the combine (``True``: before ``grouped_linear`` added its
    bias as a one-hot product)."""

    def __init__(self, moe, fc2_in_combine):
        super().__init__(moe)
        self.fc2_in_combine = fc2_in_combine

    def forward(self, x):
        moe, (tokens, plan) = self.moe, self.plan(x)
        h = moe.act(gathered_bias_linear(dispatch(tokens, plan), plan, moe.fc1_weight,
                                         moe.fc1_bias))
        if self.fc2_in_combine:
            y = combine(grouped_linear(h, plan, moe.fc2_weight), plan, tokens.shape[0],
                        moe.fc2_bias)
        else:
            y = combine(gathered_bias_linear(h, plan, moe.fc2_weight, moe.fc2_bias), plan,
                        tokens.shape[0])
        return y.view(x.shape)


class TaskMlp(nn.Module):
    """Lets a timm ``Block`` call an ``MoEMlp`` as its MLP; keeps the aux losses of the call."""

    def __init__(self, moe):
        super().__init__()
        self.moe = moe
        self.aux = {}

    def forward(self, x):
        out, self.aux = self.moe(x)
        return out


def moe_vit_small(num_experts, top_k):
    """timm ViT-S/16 with an ``MoEMlp`` of hidden 4D/k in every other (odd) block."""
    vit = VisionTransformer(embed_dim=384, depth=12, num_heads=6)
    for i in range(1, len(vit.blocks), 2):
        vit.blocks[i].mlp = TaskMlp(MoEMlp(384, num_experts, top_k, balance_weight=0.01,
                                           z_weight=0.001))
    return vit


def forward_backward(module, x, grad_out, autocast):
    def step():
        for p in module.parameters():
            p.grad = None
        with autocast():
            out = module(x)
        out = out[0] if isinstance(out, tuple) else out
        out.backward(grad_out.to(out.dtype))
    return step


def training_step(model, images, labels, autocast):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    aux_layers = [m for m in model.modules() if isinstance(m, TaskMlp)]

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = F.cross_entropy(model(images), labels)
            loss = loss + sum(sum(m.aux.values()) for m in aux_layers)
        loss.backward()
        optimizer.step()
    return step


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_interleaved(steps, repeats, device, clock=time.perf_counter):
    """Seconds of every round for each step, the steps run in turn in each round."""
    for step in steps.values():  # warm-up (and the AdamW state)
        step()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            sync(device)
            start = clock()
            step()
            sync(device)
            times[name].append(clock() - start)
    return times


def median_ratio(times, num, den):
    return statistics.median(a / b for a, b in zip(times[num], times[den]))


def peak_memory_mb(step, device):
    """Peak of the memory allocated while ``step`` runs (after a warm-up call)."""
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        step()
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=True) as prof:
        step()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        path = os.path.join(tmp, 'memory.json')
        prof.export_memory_timeline(path, device='cpu')
        with open(path) as f:
            _, sizes = json.load(f)
    return max(sum(s) for s in sizes) / 2 ** 20


def products(x, w1, h, w2, dy, out, master=None):
    """The six products of a two-layer MLP's forward + backward, into ``out`` buffers; with
    ``master`` (fp32 ``w1``, ``w2``, ``dw1``, ``dw2`` per group) also autocast's casts: the
    fp32 weights into ``w1``, ``w2`` before, the weight gradients into fp32 after."""
    def step():
        for i, (xi, w1i, hi, w2i, dyi, o) in enumerate(zip(x, w1, h, w2, dy, out)):
            if master:
                w1i.copy_(master[i]['w1'])
                w2i.copy_(master[i]['w2'])
            torch.mm(xi, w1i, out=o['h'])
            torch.mm(hi, w2i, out=o['y'])
            torch.mm(dyi, w2i.t(), out=o['dh'])
            torch.mm(hi.t(), dyi, out=o['dw2'])
            torch.mm(o['dh'], w1i.t(), out=o['dx'])
            torch.mm(xi.t(), o['dh'], out=o['dw1'])
            if master:
                master[i]['dw1'].copy_(o['dw1'])
                master[i]['dw2'].copy_(o['dw2'])
    return step


def layer_products(plan, dims, hidden, device, dtype):
    """The experts' six products as ``MoEMlp`` runs them: two ``grouped_linear`` calls on
    ``plan`` (the layer's own routing: uneven loads) and their autograd backward."""
    def leaf(*shape):
        return torch.randn(*shape, device=device, dtype=dtype, requires_grad=True)
    rows, num_experts = len(plan.expert_idx), len(plan.counts)
    x, h = leaf(rows, dims), leaf(rows, hidden)
    w1, w2 = leaf(num_experts, dims, hidden), leaf(num_experts, hidden, dims)
    dh, dy = torch.randn_like(h), torch.randn_like(x)

    def step():
        for t in (x, h, w1, w2):
            t.grad = None
        torch.autograd.backward([grouped_linear(x, plan, w1), grouped_linear(h, plan, w2)],
                                [dh, dy])
    return step


def floor_steps(device, tokens, dims, num_experts, top_k, hidden, dtype=torch.float32,
                plan=None):
    """Steps of the six products: the experts' (balanced loads) and the dense MLP's
    (``experts_products``, ``dense_products``); with a ``plan`` ``layer_products``
    (:func:`layer_products` on it); in a dtype other than fp32 both again with autocast's
    weight casts (``experts_products_casts``, ``dense_products_casts``)."""

    def operands(groups, rows, width, casts=False):
        def rand(*shape, dtype=dtype):
            return torch.randn(groups, *shape, device=device, dtype=dtype)
        x, h, dy = rand(rows, dims), rand(rows, width), rand(rows, dims)
        w1, w2 = rand(dims, width), rand(width, dims)
        out = [dict(h=torch.empty_like(hi), y=torch.empty_like(dyi), dh=torch.empty_like(hi),
                    dw2=torch.empty_like(w2i), dx=torch.empty_like(xi),
                    dw1=torch.empty_like(w1i))
               for xi, hi, dyi, w1i, w2i in zip(x, h, dy, w1, w2)]
        master = [dict(w1=w1i, w2=w2i, dw1=torch.empty_like(w1i), dw2=torch.empty_like(w2i))
                  for w1i, w2i in zip(rand(dims, width, dtype=torch.float32),
                                      rand(width, dims, dtype=torch.float32))] if casts else None
        return products(x, w1, h, w2, dy, out, master)
    shapes = dict(experts=(num_experts, tokens * top_k // num_experts, hidden),
                  dense=(1, tokens, top_k * hidden))
    steps = {f'{name}_products': operands(*shape) for name, shape in shapes.items()}
    if plan is not None:
        steps['layer_products'] = layer_products(plan, dims, hidden, device, dtype)
    if dtype != torch.float32:
        steps.update({f'{name}_products_casts': operands(*shape, casts=True)
                      for name, shape in shapes.items()})
    return steps


def floor_ratios(times):
    """From the times of :func:`floor_steps`: ``gemm_floor_vs_dense``,
    ``layer_products_vs_dense`` and ``gemm_cast_floor_vs_dense`` where those were timed."""
    pairs = dict(gemm_floor_vs_dense=('experts_products', 'dense_products'),
                 layer_products_vs_dense=('layer_products', 'dense_products'),
                 gemm_cast_floor_vs_dense=('experts_products_casts', 'dense_products_casts'))
    return {name: round(median_ratio(times, num, den), 3)
            for name, (num, den) in pairs.items() if num in times}


def overhead_above_floor(times):
    """Median over rounds of the MoE layer's time beyond its experts' products (and casts)
    minus the dense MLP's time beyond its own products (and casts), over the dense step."""
    suffix = '_products_casts' if 'experts_products_casts' in times else '_products'
    return statistics.median(
        ((moe - experts) - (dense - dense_floor)) / dense
        for moe, experts, dense, dense_floor in zip(times['moe'], times['experts' + suffix],
                                                    times['dense'], times['dense' + suffix]))


def benchmark_mlp(device, autocast, repeats, batch, tokens, dims, num_experts, top_k, hidden,
                  floor_dtype=torch.float32, clock=time.perf_counter):
    torch.manual_seed(0)
    moe = MoEMlp(dims, num_experts, top_k, hidden_dims=hidden).to(device)
    variants = {'moe': moe, 'dense': Mlp(dims, top_k * hidden).to(device),
                'reference': ReferenceMoEMlp(moe), 'padded_bmm': PaddedBmmMoEMlp(moe),
                'biases_gathered': GatheredBiasMoEMlp(moe, fc2_in_combine=False),
                'fc1_bias_gathered': GatheredBiasMoEMlp(moe, fc2_in_combine=True)}
    x = torch.randn(batch, tokens, dims, device=device, requires_grad=True)
    grad_out = torch.randn(batch, tokens, dims, device=device)
    with torch.no_grad(), autocast():  # the designs compute the same function
        expected = moe(x)[0].float()
        mixed = torch.is_autocast_enabled(device.type)
        tolerance = (3e-2 if mixed else 1e-4) * expected.abs().max().item()
        for name in ('reference', 'padded_bmm', 'biases_gathered', 'fc1_bias_gathered'):
            error = (variants[name](x).float() - expected).abs().max().item()
            assert error <= tolerance, f'{name} differs from MoEMlp by {error}'
    with torch.no_grad(), statistics_paused():
        plan = MoEDesign(moe).plan(x)[1]
    steps = {name: forward_backward(m, x, grad_out, autocast) for name, m in variants.items()}
    floors = floor_steps(device, batch * tokens, dims, num_experts, top_k, hidden, floor_dtype,
                         plan)
    times = time_interleaved({**steps, **floors}, repeats, device, clock)
    load = moe.router.usage.sum(0)
    return dict(
        shape=dict(tokens=batch * tokens, dims=dims, num_experts=num_experts, top_k=top_k,
                   expert_hidden=hidden, dense_hidden=top_k * hidden),
        max_load_over_mean=round((load.max() / load.float().mean()).item(), 3),
        median_ms={name: round(statistics.median(t) * 1e3, 2) for name, t in times.items()},
        ratio_vs_dense=round(median_ratio(times, 'moe', 'dense'), 3),
        overhead_above_floor=round(overhead_above_floor(times), 3),
        speedup_vs_loop=round(median_ratio(times, 'reference', 'moe'), 3),
        padded_bmm_vs_ours=round(median_ratio(times, 'padded_bmm', 'moe'), 3),
        bias_fold_speedup=round(median_ratio(times, 'biases_gathered', 'moe'), 3),
        fc1_bias_fold_speedup=round(median_ratio(times, 'fc1_bias_gathered', 'moe'), 3),
        **floor_ratios(times),
        peak_memory_mb={name: round(peak_memory_mb(step, device), 1)
                        for name, step in steps.items()})


def benchmark_vit(device, autocast, repeats, batch, num_experts, top_k, clock=time.perf_counter):
    torch.manual_seed(0)
    models = {'moe': moe_vit_small(num_experts, top_k).to(device),
              'dense': VisionTransformer(embed_dim=384, depth=12, num_heads=6).to(device)}
    images = torch.randn(batch, 3, 224, 224, device=device)
    labels = torch.randint(0, 1000, (batch,), device=device)
    steps = {name: training_step(m, images, labels, autocast) for name, m in models.items()}
    times = time_interleaved(steps, repeats, device, clock)
    return dict(
        batch=batch, moe_blocks='odd', num_experts=num_experts, top_k=top_k,
        expert_hidden=4 * 384 // top_k,
        params_m={name: round(sum(p.numel() for p in m.parameters()) / 1e6, 2)
                  for name, m in models.items()},
        median_ms={name: round(statistics.median(t) * 1e3, 1) for name, t in times.items()},
        vit_ratio=round(median_ratio(times, 'moe', 'dense'), 3),
        peak_memory_mb={name: round(peak_memory_mb(step, device), 1)
                        for name, step in steps.items()})


def run(device, args):
    bf16 = device.type == 'cuda' or args.amp
    if bf16:
        def autocast():
            return torch.autocast(device.type, dtype=torch.bfloat16)
    else:
        autocast = nullcontext
    clock = time.process_time if args.clock == 'process' and device.type == 'cpu' else \
        time.perf_counter
    floor_dtype = torch.bfloat16 if bf16 else torch.float32
    mlp = benchmark_mlp(device, autocast, args.repeats, args.batch, 197, 384, 16, 2, 1536,
                        floor_dtype, clock)
    result = dict(ratio_vs_dense=mlp['ratio_vs_dense'], speedup_vs_loop=mlp['speedup_vs_loop'],
                  mlp=mlp)
    if not args.mlp_only:
        vit = benchmark_vit(device, autocast, args.vit_repeats, args.batch, 16, 2, clock)
        result.update(vit_ratio=vit['vit_ratio'], vit=vit)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--json', action='store_true', help='print one JSON line')
    parser.add_argument('--repeats', type=int, default=15, help='rounds of the MLP timing')
    parser.add_argument('--vit-repeats', type=int, default=7, help='rounds of the ViT timing')
    parser.add_argument('--batch', type=int, default=8, help='images (of 197 tokens)')
    parser.add_argument('--threads', type=int, help='CPU threads (default: torch default)')
    parser.add_argument('--amp', action='store_true', help='CPU in bf16 autocast too')
    parser.add_argument('--mlp-only', action='store_true', help='skip the ViT-S step')
    parser.add_argument('--clock', choices=['wall', 'process'], default='wall',
                        help='CPU timings in wall time or in CPU time of this process')
    parser.add_argument('--keep-freed-memory', action='store_true',
                        help='glibc malloc reuses freed memory instead of unmapping it '
                             '(env_cfg.keep_freed_memory of tools/train.py)')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    kept = args.keep_freed_memory and keep_freed_memory()
    result = dict(torch=torch.__version__, threads=torch.get_num_threads(), clock=args.clock,
                  keep_freed_memory=kept,
                  dtype='bfloat16 autocast' if args.amp else 'float32',
                  targets=dict(ratio_vs_dense='<= 1.15', speedup_vs_loop='>= 1.1',
                               vit_ratio='<= 1.25'))
    result.update(run(torch.device('cpu'), args))
    if torch.cuda.is_available():
        result['cuda'] = dict(device=torch.cuda.get_device_name(), dtype='bfloat16 autocast',
                              **run(torch.device('cuda'), args))
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
