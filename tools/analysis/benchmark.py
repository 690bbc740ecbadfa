"""Training-step time of a config's model against timm, and data loader throughput.

``python tools/analysis/benchmark.py CONFIG --vs-timm --json`` prints one JSON line:

* ``step_s``: median training step (forward, backward, AdamW) of the config's backbone with
  its classification head, and of timm's ``VisionTransformer`` of the same size, on the same
  random batch; ``ratio_vs_timm`` = median over back-to-back pairs of modzoo / timm (pairs
  alternate which runs first, so a noisy machine affects both alike);
* ``loader_images_per_s``: images/s of the config's train dataloader (``--workers``
  processes), beside ``train_images_per_s`` of the model, so one sees which one limits;
* with ``--amp``, ``amp_speedup``: median over back-to-back pairs of the fp32 step over the
  same step in bf16 autocast (``tools/train.py --amp``), on the CPU.

``--cfg-options`` changes the model, e.g. to a ViT-S/16 at 224 px:
``model.backbone.arch=small model.backbone.patch_size=16 model.backbone.img_size=224`` and each
head's ``in_channels=384``.
"""
import argparse
import functools
import json
import statistics
import time

import torch
import torch.nn.functional as F
from mmengine.config import Config, DictAction
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from timm.models.vision_transformer import VisionTransformer

from modzoo.heads import ClsHead
from modzoo.registry import MODELS
from modzoo.structures import TaskDataSample


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--vs-timm', action='store_true', help='time timm ViT beside it')
    parser.add_argument('--json', action='store_true', help='print only the JSON line')
    parser.add_argument('--task', help='classification task to time (default: first ClsHead)')
    parser.add_argument('--batch-size', type=int, help='default: the train dataloader\'s')
    parser.add_argument('--steps', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--loader-batches', type=int, default=30)
    parser.add_argument('--amp', action='store_true', help='time the step in bf16 beside it')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args()


def classification_task(model, task):
    if task is None:
        task = next((t for t, h in model.heads.items() if type(h) is ClsHead), None)
    if task not in model.heads or type(model.heads[task]) is not ClsHead:
        raise ValueError(f'--task must name a ClsHead task; heads: '
                         f'{ {t: type(h).__name__ for t, h in model.heads.items()} }')
    return task


def timm_twin(backbone, num_classes, drop_path_rate):
    """timm VisionTransformer with the backbone's sizes and stochastic depth."""
    return VisionTransformer(img_size=backbone.patch_embed.img_size,
                             patch_size=backbone.patch_embed.patch_size,
                             embed_dim=backbone.embed_dim, depth=len(backbone.blocks),
                             num_heads=backbone.blocks[0].attn.num_heads,
                             num_classes=num_classes, drop_path_rate=drop_path_rate)


def time_steps(steps, warmup, fns):
    """Run the step functions in alternating order; seconds per step of each."""
    times = {name: [] for name in fns}
    order = list(fns.items())
    for i in range(warmup + steps):
        for name, fn in (order if i % 2 else order[::-1]):
            start = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def loader_throughput(cfg, workers, batches):
    loader_cfg = dict(cfg.train_dataloader, num_workers=workers,
                      persistent_workers=workers > 0)
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    it = iter(loader)
    next(it)  # workers started, first batch ready
    start, images = time.perf_counter(), 0
    for _ in range(batches):
        images += len(next(it)['inputs'])
    return images / (time.perf_counter() - start)


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    DefaultScope.get_instance('benchmark', scope_name=cfg.get('default_scope', 'modzoo'))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    task = classification_task(model, args.task)
    backbone, head = model.backbone, model.heads[task]
    batch = args.batch_size or cfg.train_dataloader.batch_size
    size = backbone.patch_embed.img_size
    x = torch.randn(batch, 3, *size)
    y = torch.randint(0, head.num_classes, (batch, ))
    samples = [TaskDataSample(gt_label=label) for label in y]

    ours = torch.nn.ModuleList([backbone, head])
    opt = torch.optim.AdamW(ours.parameters(), lr=1e-4)

    def modzoo_step(bf16=False):
        with torch.autocast('cpu', torch.bfloat16, enabled=bf16):
            loss = head.loss(backbone(x), samples)['loss']
        opt.zero_grad()
        loss.backward()
        opt.step()

    fns = dict(modzoo=modzoo_step)
    if args.amp:
        fns['modzoo_bf16'] = functools.partial(modzoo_step, bf16=True)
    if args.vs_timm:
        ref = timm_twin(backbone, head.num_classes,
                        cfg.model.backbone.get('drop_path_rate', 0.))
        ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-4)

        def timm_step():
            loss = F.cross_entropy(ref(x), y)
            ref_opt.zero_grad()
            loss.backward()
            ref_opt.step()
        fns['timm'] = timm_step

    times = time_steps(args.steps, args.warmup, fns)
    step_s = {name: statistics.median(t) for name, t in times.items()}
    result = dict(config=args.config, task=task, batch_size=batch, img_size=list(size),
                  threads=torch.get_num_threads(), steps=args.steps, step_s=step_s,
                  train_images_per_s=batch / step_s['modzoo'])
    if args.vs_timm:
        result['ratio_vs_timm'] = statistics.median(
            a / b for a, b in zip(times['modzoo'], times['timm']))
    if args.amp:
        result['amp_speedup'] = statistics.median(
            a / b for a, b in zip(times['modzoo'], times['modzoo_bf16']))
    result['loader_images_per_s'] = loader_throughput(cfg, args.workers, args.loader_batches)
    result['loader_workers'] = args.workers
    if not args.json:
        print(f'modzoo step {step_s["modzoo"]:.4f} s' +
              (f', timm step {step_s["timm"]:.4f} s' if args.vs_timm else ''))
    print(json.dumps(result))


if __name__ == '__main__':
    main()
