"""Chameleon support encoding and query prediction cost against the number of support images N.

    python tools/analysis/benchmark_chameleon.py --json [--config CFG] [--img-size S]
        [--shots 1 2 4 ...] [--chunk-size 4] [--repeats 3] [--threads 1]

For every N, a fresh process builds the config's model at ``--img-size`` (default: the tiny
SynthScenes model at 128 px, 256 tokens per image; random weights, eval mode), then measures
(best of ``--repeats``) the time to encode N support images of one label channel, all at once
and in chunks of ``--chunk-size``, and the time to predict one query image from the encoded
support; and, in separate fresh processes, the peak memory of encoding the support all at once
and chunked: the peak resident set size (VmHWM, reset through /proc/self/clear_refs) over the
encoding minus the resident size before it, with glibc serving tensors of 64 KiB and more from
mmap so that freed tensors leave the resident set (Linux only). The working memory is that
peak minus the encoded support itself (which grows with N whatever the chunking).
Least-squares lines time = a + b N give the fitted slope b (seconds per support image) and
R^2 (1 = linear). Chunked encoding should
keep the peak memory flat in N apart from the stored support tokens.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

DEFAULT_CONFIG = 'configs/chameleon/chameleon-tiny_synth-episodes.py'


def build(config, img_size):
    """The config's model at ``img_size`` (random weights, eval mode)."""
    from mmengine.config import Config

    from modzoo.registry import MODELS
    cfg = Config.fromfile(config).model
    cfg.image_encoder.img_size = cfg.label_encoder.img_size = img_size
    return MODELS.build(cfg).eval()


def episode(model, n):
    h, w = model.image_encoder.img_size
    g = torch.Generator().manual_seed(0)
    return (torch.randn(1, 1, n, 3, h, w, generator=g),
            torch.rand(1, 1, n, 1, h, w, generator=g),
            torch.randn(1, 1, 1, 3, h, w, generator=g), torch.zeros(1, 1, dtype=torch.long))


def best_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def status_kib(field):
    """A /proc/self/status field (VmRSS, VmHWM) in KiB."""
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ':'))


def reset_peak_rss():
    """Reset the peak resident set size (VmHWM) to the current one; return it (KiB)."""
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    return status_kib('VmRSS')


def child(args):
    """One measurement in this fresh process; prints a JSON line."""
    torch.set_num_threads(args.threads)
    model = build(args.config, args.img_size)
    x_s, y_s, x_q, t = episode(model, args.n)
    chunk = args.chunk_size if args.mode == 'memory_chunked' else None
    with torch.no_grad():
        if args.mode.startswith('memory'):
            model.encode_support(x_s[:, :, :1], y_s[:, :, :1], t, t)     # warm up, N = 1
            before = reset_peak_rss()
            support = model.encode_support(x_s, y_s, t, t, chunk_size=chunk)
            stored = sum(x.numel() * x.element_size() for x in support.w + support.z)
            print(json.dumps(dict(peak_mib=(status_kib('VmHWM') - before) / 1024,
                                  stored_mib=stored / 2 ** 20)))
            return
        support = model.encode_support(x_s, y_s, t, t)
        out = dict(
            encode_s=best_time(lambda: model.encode_support(x_s, y_s, t, t), args.repeats),
            encode_chunked_s=best_time(
                lambda: model.encode_support(x_s, y_s, t, t, chunk_size=args.chunk_size),
                args.repeats),
            query_s=best_time(lambda: model.predict_query(support, x_q), args.repeats))
    print(json.dumps(out))


def fit(ns, values):
    """Least squares values = a + b * n -> dict(slope, intercept, r2)."""
    b, a = np.polyfit(ns, values, 1)
    pred = a + b * np.asarray(ns)
    ss_res = float(((np.asarray(values) - pred) ** 2).sum())
    ss_tot = float(((np.asarray(values) - np.mean(values)) ** 2).sum())
    return dict(slope=float(b), intercept=float(a), r2=1 - ss_res / ss_tot if ss_tot else 1.)


def run_child(args, n, mode):
    cmd = [sys.executable, os.path.abspath(__file__), '--child', '--n', str(n), '--mode', mode,
           '--config', args.config, '--img-size', str(args.img_size),
           '--chunk-size', str(args.chunk_size), '--repeats', str(args.repeats),
           '--threads', str(args.threads)]
    # big tensors from mmap, so a freed tensor leaves the resident set and the peak resident
    # set size over the encoding is the peak of live tensor memory
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MALLOC_MMAP_THRESHOLD_='65536')
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--img-size', type=int, default=128,
                        help='image side the model is built for (default 128)')
    parser.add_argument('--shots', type=int, nargs='+',
                        default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument('--chunk-size', type=int, default=4)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--n', type=int, help=argparse.SUPPRESS)
    parser.add_argument('--mode', default='time', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0

    rows = []
    for n in args.shots:
        row = dict(n=n, **run_child(args, n, 'time'))
        whole, chunked = run_child(args, n, 'memory'), run_child(args, n, 'memory_chunked')
        row.update(support_mib=whole['stored_mib'], peak_mib=whole['peak_mib'],
                   peak_chunked_mib=chunked['peak_mib'],
                   working_mib=whole['peak_mib'] - whole['stored_mib'],
                   working_chunked_mib=chunked['peak_mib'] - chunked['stored_mib'])
        rows.append(row)
        if not args.json:
            print(row, file=sys.stderr)
    ns = [r['n'] for r in rows]
    result = dict(
        config=args.config, img_size=args.img_size, chunk_size=args.chunk_size,
        threads=args.threads, rows=rows,
        fit_encode=fit(ns, [r['encode_s'] for r in rows]),
        fit_encode_chunked=fit(ns, [r['encode_chunked_s'] for r in rows]),
        fit_query=fit(ns, [r['query_s'] for r in rows]),
        fit_working_mib=fit(ns, [r['working_mib'] for r in rows]),
        fit_working_chunked_mib=fit(ns, [r['working_chunked_mib'] for r in rows]))
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
