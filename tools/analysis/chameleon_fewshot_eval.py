"""Leave-task-out evaluation of a meta-trained Chameleon on SynthScenes dense tasks.

    python tools/analysis/chameleon_fewshot_eval.py CONFIG CKPT --json
        [--families semseg normals] [--semseg-classes 2 3 12] [--shots 1 5 10]
        [--steps 50] [--num-query 20]

For every held-out task (each chosen semseg class on its own, the binary protocol; a
multi-channel family as one task with a sub-task per channel) and every K, on scenes the
meta-training never saw (scene seed 1): Chameleon adapted with ``finetune`` on K labelled
images and predicted with the K images as support; (a) a small head (two 1x1 convs on the
4 frozen encoder levels) trained from scratch on the same K images for the same steps; and
(b) that head trained on the labels of all ``--full-scenes`` pool scenes. Metric: IoU (%) for
BCE tasks, MAE for L1 tasks, on ``--num-query`` query scenes.
"""
import argparse
import copy
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modzoo.datasets import SynthEpisodes
from modzoo.datasets.synth.dense_tasks import FAMILIES, FAMILY_INDEX
from modzoo.models.chameleon import LOSS_TYPES, episode_losses
from modzoo.models.chameleon_adaptation import add_task, dense_metric, finetune
from modzoo.zoo import init_model


class ProbeHead(nn.Module):
    """4 maps [B, D, h, w] -> concat -> 1x1 conv (64) -> GELU -> 1x1 conv (C), upsampled."""

    def __init__(self, dim, channels):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(4 * dim, 64, 1), nn.Conv2d(64, channels, 1)

    def forward(self, maps, size):
        return F.interpolate(self.fc2(F.gelu(self.fc1(torch.cat(maps, 1)))), size=size,
                             mode='bilinear', align_corners=False)


def probe(model, x, y, x_q, loss_type, steps, seed, batch=10):
    """Train a ProbeHead on frozen encoder features of x [K, 3, H, W] / y [K, C, H, W] (the
    encoder runs a new bias set, the mean of the meta-trained ones); return query
    probabilities [M, C, H, W]."""
    torch.manual_seed(seed)
    model = copy.deepcopy(model)
    task, _ = add_task(model, 1)
    enc = model.image_encoder
    with torch.no_grad():
        feats = [enc(x[i:i + 50], task.expand(len(x[i:i + 50]))).maps
                 for i in range(0, len(x), 50)]
        feats = [torch.cat(level) for level in zip(*feats)]
        q_feats = enc(x_q, task.expand(len(x_q))).maps
    head = ProbeHead(enc.embed_dim, y.shape[1])
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    kinds = torch.full((1, y.shape[1]), loss_type)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randperm(len(x), generator=gen)[:batch]
        logits = head([f[idx] for f in feats], x.shape[-2:])
        loss = sum(episode_losses(logits.transpose(0, 1)[None, :, :, None],
                                  y[idx].transpose(0, 1)[None, :, :, None], kinds).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return head(list(q_feats), x.shape[-2:]).sigmoid()


def chameleon(model, x, y, x_q, loss_type, steps, seed):
    """Adapt a copy of ``model`` on x [K, 3, H, W] / y [K, C, H, W]; query probabilities
    [M, C, H, W] with the K images as support."""
    model = copy.deepcopy(model)
    t_idx, g_idx = add_task(model, y.shape[1])
    finetune(model, x, y, t_idx, g_idx, loss_type, steps=steps, seed=seed)
    C = y.shape[1]
    with torch.no_grad():
        support = model.encode_support(x[None, None].expand(1, C, *x.shape),
                                       y.transpose(0, 1)[None, :, :, None],
                                       t_idx[None], g_idx[None])
        out = model.predict_query(support, x_q[None, None].expand(1, C, *x_q.shape))
    return out[0, :, :, 0].transpose(0, 1).sigmoid()


def task_data(pool, family, channels, idx):
    """Images [n, 3, H, W] (normalisation left to the caller) and labels [n, C, H, W]."""
    x = pool.images[idx]
    y = torch.from_numpy(pool.labels[family][idx][:, channels])
    return x, y


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--families', nargs='+', default=['semseg', 'normals'],
                        choices=sorted(FAMILY_INDEX))
    parser.add_argument('--semseg-classes', type=int, nargs='+', default=[2, 3, 12])
    parser.add_argument('--shots', type=int, nargs='+', default=[1, 5, 10])
    parser.add_argument('--steps', type=int, default=50)
    parser.add_argument('--num-query', type=int, default=20)
    parser.add_argument('--eval-scenes', type=int, default=200)
    parser.add_argument('--full-scenes', type=int, default=400)
    parser.add_argument('--full-steps', type=int, default=300)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args(argv)

    model = init_model(args.config, args.checkpoint)
    size = model.image_encoder.img_size[0]
    norm = model.data_preprocessor.normalize
    evalpool = SynthEpisodes(num_scenes=args.eval_scenes, size=size, scene_seed=1,
                             families=args.families, label_augmentation=False)
    trainpool = SynthEpisodes(num_scenes=args.full_scenes, size=size, scene_seed=0,
                              families=args.families, label_augmentation=False)
    rows = []
    for family in args.families:
        fam = FAMILIES[FAMILY_INDEX[family]]
        loss_type = LOSS_TYPES[fam.loss]
        tasks = ([[c] for c in args.semseg_classes] if family == 'semseg'
                 else [list(range(fam.channels))])
        for channels in tasks:
            name = f'{family}/class{channels[0]}' if family == 'semseg' else family
            rng = np.random.default_rng(args.seed)
            cand = evalpool.candidates(family, channels[0])
            if len(cand) < args.num_query + max(args.shots):
                raise ValueError(
                    f'{name}: {len(cand)} of the --eval-scenes {args.eval_scenes} scenes show '
                    f'it, fewer than --num-query {args.num_query} + the largest of --shots '
                    f'{max(args.shots)}; raise --eval-scenes or lower those')
            order = rng.permutation(cand)
            q_idx = order[:args.num_query]
            x_q, y_q = task_data(evalpool, family, channels, q_idx)
            x_q = norm(x_q)
            full_x, full_y = task_data(trainpool, family, channels,
                                       trainpool.candidates(family, channels[0]))
            full = dense_metric(probe(model, norm(full_x), full_y, x_q, loss_type,
                                      args.full_steps, args.seed), y_q, loss_type)
            for k in args.shots:
                s_idx = order[args.num_query:args.num_query + k]
                x, y = task_data(evalpool, family, channels, s_idx)
                pred = chameleon(model, norm(x), y, x_q, loss_type, args.steps, args.seed)
                rows.append(dict(
                    task=name, k=k, chameleon=dense_metric(pred, y_q, loss_type),
                    head_from_scratch=dense_metric(
                        probe(model, norm(x), y, x_q, loss_type, args.steps, args.seed),
                        y_q, loss_type),
                    head_full_labels=full))
                if not args.json:
                    print(rows[-1], file=sys.stderr)
    print(json.dumps(dict(config=args.config, checkpoint=args.checkpoint, steps=args.steps,
                          num_query=args.num_query, rows=rows)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
