"""Uni-Perceiver v2 inference costs, measured against references in the same run.

    python tools/analysis/benchmark_uniperceiver.py [--config CONFIG] [--json]

1. Classification: the model's classification prediction (image tokens, decoder, cosine to
   the class names' features, cached once) against a linear head on the same backbone
   (``ClsHead`` on its class token), and against re-encoding the class names for
   every batch; interleaved pairs, medians of the per-pair ratios.
2. Retrieval evaluation (``RetrievalMetric``'s ranking): N images with 5 captions each,
   N = 1000 and 5000 (``--sizes``): seconds, nanoseconds per compared image-caption pair
   (constant when the cost of a query is linear in its candidates), and the largest
   similarity block held at once (query chunk x candidates) beside the N x 5N matrix a naive
   ranking would hold.
With ``--params CONFIG ...`` it prints the parameter counts of those configs instead
(built on the meta device: no weights are allocated; a RoBERTa text encoder's
``config.json`` is fetched unless ``--roberta DIR`` has it).
Weights are random: the cost does not depend on them.
"""
import argparse
import json
import os.path as osp
import statistics
import tempfile
import time

import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from modzoo.evaluation.metrics.retrieval import retrieval_ranks
from modzoo.heads import ClsHead
from modzoo.models.text import train_bpe
from modzoo.registry import MODELS
from modzoo.structures import TaskDataSample

TINY = 'configs/uniperceiver/uniperceiver-tiny_synth.py'


def seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def build(cfg, device='cpu'):
    with DefaultScope.overwrite_default_scope('modzoo'), torch.device(device):
        return MODELS.build(cfg.model)


@torch.no_grad()
def classification(config, batch, repeats):
    cfg = Config.fromfile(config)
    model = build(cfg).eval()
    head = model.heads['cls']
    size = cfg.model.backbone.get('img_size', 224)
    x = torch.randn(batch, 3, size, size)
    samples = [TaskDataSample(metainfo=dict(tasks=('cls', ), img_shape=(size, size)))
               for _ in range(batch)]
    channels = model.backbone(x[:1]).maps[-1].shape[1]
    linear = ClsHead(len(head.class_names), channels).eval()

    def uniperceiver():
        head.predict(model, model.backbone(x), samples)

    def uncached():
        model._cache.clear()
        uniperceiver()

    def linear_head():
        linear.predict(model.backbone(x), samples)

    uniperceiver()  # fills the class-name cache, as the first batch of an evaluation does
    times = {name: [] for name in ('uniperceiver', 'uncached', 'linear')}
    for _ in range(repeats):
        for name, fn in (('linear', linear_head), ('uniperceiver', uniperceiver),
                         ('uncached', uncached)):
            times[name].append(seconds(fn))
    ratio = [u / lin for u, lin in zip(times['uniperceiver'], times['linear'])]
    uncached_ratio = [u / c for u, c in zip(times['uncached'], times['uniperceiver'])]
    return dict(batch=batch, img_size=size, classes=len(head.class_names),
                linear_s=statistics.median(times['linear']),
                uniperceiver_s=statistics.median(times['uniperceiver']),
                ratio_vs_linear=statistics.median(ratio),
                uncached_vs_cached=statistics.median(uncached_ratio))


@torch.no_grad()
def retrieval(sizes, captions, dims, chunk):
    out = []
    for n in sizes:
        images, texts = torch.randn(n, dims), torch.randn(n * captions, dims)
        owner = torch.arange(n).repeat_interleave(captions)
        took = seconds(lambda: retrieval_ranks(images, texts, owner, chunk))
        queries = n + n * captions
        pairs = 2 * n * n * captions          # each direction compares every pair once
        out.append(dict(images=n, texts=n * captions, queries=queries, seconds=took,
                        ns_per_pair=1e9 * took / pairs,
                        block_mb=4 * chunk * n * captions / 2 ** 20,
                        full_matrix_mb=4 * n * n * captions / 2 ** 20))
    return out


def params(configs, roberta=None):
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        vocab = osp.join(tmp, 'bpe.json')
        train_bpe(['a'], 300, ('<s>', '<pad>', '</s>', '<unk>')).save(vocab)
        for config in configs:
            cfg = Config.fromfile(config)
            cfg.model.backbone.pretrained = None
            if cfg.model.text_encoder.type == 'RobertaTextEncoder':
                cfg.model.text_encoder.update(pretrained=False, vocab_size=None)
                if roberta:
                    cfg.model.text_encoder.model = roberta
            cfg.model.tokenizer = dict(type='BPETokenizer', vocab_file=vocab)
            counts = build(cfg, 'meta').parameter_counts()
            out[config] = dict(total_M=counts['total'] / 1e6, active_M=counts['active'] / 1e6,
                               parts_M={k: [t / 1e6, a / 1e6]
                                        for k, (t, a) in counts['parts'].items()})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=TINY)
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--sizes', type=int, nargs='+', default=[1000, 5000])
    parser.add_argument('--captions', type=int, default=5)
    parser.add_argument('--dims', type=int, default=256)
    parser.add_argument('--chunk', type=int, default=256)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--params', nargs='+', metavar='CONFIG')
    parser.add_argument('--roberta', metavar='DIR',
                        help="a folder with RoBERTa's config.json, for --params offline")
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.params:
        result = params(args.params, args.roberta)
    else:
        result = dict(classification=classification(args.config, args.batch, args.repeats),
                      retrieval=retrieval(args.sizes, args.captions, args.dims, args.chunk),
                      threads=args.threads)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
