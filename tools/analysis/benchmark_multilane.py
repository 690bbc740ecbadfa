"""Inference cost of MULTI-LANE pathways, in units of one plain forward of the same ViT.

    python tools/analysis/benchmark_multilane.py [--json]

Times, in one run (medians over ``--repeats``, the configurations interleaved):
  * one plain forward of the frozen timm ViT;
  * ``MultiLaneViT.forward_tokens`` with T = 1..``--max-tasks`` pathways (the frozen stream
    once, each pathway a CLS token and S summaries);
  * the naive design: every pathway carries all N tokens through every block (with its
    prefix prompts), one forward per pathway, for T = 1..``--naive-max-tasks`` (its cost
    grows by one forward per pathway, so a few points give its slope).
``cost_per_pathway`` is the least-squares slope of time over T divided by the plain forward
time (the paper's design targets <= 0.08); ``naive_cost_per_pathway`` the same for the naive
design (about 1). Weights are random: the cost does not depend on them.
"""
import argparse
import json
import statistics
import time

import torch

from modzoo.models.backbones.prompted_vit import MultiLaneViT
from modzoo.models.layers.prefix_prompts import prefix_attention


def full_token_pathway(backbone, x, task):
    """The naive pathway: all N tokens with the task's prompts, x [B, 3, H, W] -> CLS [B, D]."""
    vit = backbone.vit
    tokens = vit.norm_pre(vit._pos_embed(vit.patch_embed(x)))
    for i, blk in enumerate(vit.blocks):
        prefix = backbone.prompts[i]([task], x.shape[0]) if i < len(backbone.prompts) else None
        tokens = tokens + blk.ls1(prefix_attention(blk.attn, blk.norm1(tokens), prefix))
        tokens = tokens + blk.ls2(blk.mlp(blk.norm2(tokens)))
    return vit.norm(tokens[:, 0])


def seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def slope(xs, ys):
    """Least-squares slope of ys over xs."""
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    return (sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
            / sum((x - mean_x) ** 2 for x in xs))


@torch.no_grad()
def benchmark(arch, batch, img_size, max_tasks, naive_max_tasks, repeats, num_selectors,
              num_prompts, num_prompt_layers):
    backbone = MultiLaneViT(arch=arch, num_tasks=max_tasks, num_selectors=num_selectors,
                            num_prompts=num_prompts, num_prompt_layers=num_prompt_layers,
                            vit_cfg=dict(img_size=img_size)).eval()
    x = torch.rand(batch, 3, img_size, img_size)
    task_counts = list(range(1, max_tasks + 1))
    naive_counts = list(range(1, naive_max_tasks + 1))
    runs = {'plain': lambda: backbone.vit.forward_features(x)}
    for t in task_counts:
        runs[('ours', t)] = lambda t=t: backbone.forward_tokens(x, list(range(t)))
    for t in naive_counts:
        runs[('naive', t)] = lambda t=t: [full_token_pathway(backbone, x, i) for i in range(t)]
    for fn in runs.values():                                           # warm-up
        fn()
    times = {key: [] for key in runs}
    for _ in range(repeats):
        for key, fn in runs.items():
            times[key].append(seconds(fn))
    median = {key: statistics.median(values) for key, values in times.items()}
    plain = median['plain']
    ours = [median[('ours', t)] for t in task_counts]
    naive = [median[('naive', t)] for t in naive_counts]
    return dict(
        arch=arch, batch=batch, img_size=img_size, num_selectors=num_selectors,
        num_prompts=num_prompts, num_prompt_layers=num_prompt_layers, repeats=repeats,
        device='cpu', threads=torch.get_num_threads(), plain_s=round(plain, 5),
        tasks=task_counts, multilane_s=[round(s, 5) for s in ours],
        naive_tasks=naive_counts, naive_s=[round(s, 5) for s in naive],
        cost_per_pathway=round(slope(task_counts, ours) / plain, 4),
        naive_cost_per_pathway=round(slope(naive_counts, naive) / plain, 4),
        target_cost_per_pathway=0.08)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--json', action='store_true', help='print one JSON line')
    parser.add_argument('--arch', default='vit_small_patch16_224')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--max-tasks', type=int, default=10)
    parser.add_argument('--naive-max-tasks', type=int, default=4)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--num-selectors', type=int, default=20)
    parser.add_argument('--num-prompts', type=int, default=20)
    parser.add_argument('--num-prompt-layers', type=int, default=5)
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s)')
    args = parser.parse_args(argv)
    if min(args.max_tasks, args.naive_max_tasks) < 2 or args.repeats < 1:
        parser.error(f'--max-tasks={args.max_tasks} and --naive-max-tasks='
                     f'{args.naive_max_tasks} must be >= 2 (a slope needs two points), '
                     f'--repeats={args.repeats} >= 1')
    if args.threads:
        torch.set_num_threads(args.threads)
    result = benchmark(args.arch, args.batch, args.img_size, args.max_tasks,
                       args.naive_max_tasks, args.repeats, args.num_selectors,
                       args.num_prompts, args.num_prompt_layers)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['arch']}, batch {result['batch']}, {result['img_size']} px, "
          f"{result['threads']} threads: plain forward {result['plain_s'] * 1e3:.1f} ms")
    naive = dict(zip(result['naive_tasks'], result['naive_s']))
    for t, ours in zip(result['tasks'], result['multilane_s']):
        line = f'T={t:2d}  multi-lane {ours * 1e3:8.1f} ms'
        print(line + (f'   naive {naive[t] * 1e3:8.1f} ms' if t in naive else ''))
    print(f"cost per pathway: multi-lane {result['cost_per_pathway']:.3f}, "
          f"naive {result['naive_cost_per_pathway']:.3f} (plain forwards)")


if __name__ == '__main__':
    main()
