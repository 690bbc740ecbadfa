"""Uni-Perceiver's `<SPE>` collapse, measured: is the classification objective learning?

    python tools/analysis/uniperceiver_collapse.py [--config CONFIG] [--checkpoint CKPT]
        [--train-steps N --lr LR --slow-mult M] [--cfg-options KEY=VALUE ...]

Statistics of the classification path on SynthScenes (``--images`` validation images):

* ``image_spe_cos``: mean cosine between the projected `<SPE>` outputs of different images;
* ``class_name_cos``: the same between the eleven class names' candidate features, and
  ``text_encoder_cos`` between the text encoder's (mean-pooled) outputs of the class names;
* ``logit_spread``: mean over images of (largest - smallest) cosine logit, ``scale`` = 1/tau;
* ``val_top1``: classification accuracy on those images;
* ``grad_norm``: with ``--checkpoint``, the gradient norm of the classification loss per part
  on one training batch (does the loss still reach the image side?).

With ``--train-steps N`` the model trains on classification alone (batches of
``--batch-size`` drawn from the training set, AdamW at ``--lr``, weight decay 0.05, no warmup)
and the statistics are printed every ``--every`` steps: the race between the image side
becoming class-discriminative and the candidates collapsing. ``--slow-mult M`` multiplies the
learning rate of the candidate side (text encoder, text projection, decoder, output
projection) by M; ``--linear`` trains a linear head on the mean-pooled last backbone map
instead, the reference. Prints one JSON object per line.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F
from mmengine.config import Config, DictAction
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope
from mmengine.runner import set_random_seed

from modzoo.registry import DATASETS, MODELS

TINY = 'configs/uniperceiver/uniperceiver-tiny_synth.py'
CANDIDATE_SIDE = ('text_encoder', 'text_proj', 'decoder', 'out_proj')


def mean_offdiag_cos(x):
    """Mean cosine between different rows of ``x`` [N, D]."""
    x = F.normalize(x, dim=-1)
    sim = x @ x.t()
    return sim[~torch.eye(len(x), dtype=torch.bool)].mean().item()


def cls_dataset(cfg, split):
    data = cfg[f'{split}_dataloader'].dataset
    data.sources = {'cls': data.sources['cls']}
    return DATASETS.build(data)


def labels(batch):
    return torch.stack([s.gt_label for s in batch['data_samples']]).flatten()


@torch.no_grad()
def statistics(model, batch, linear=None):
    model.eval()
    if linear is not None:
        feats = model.backbone(batch['inputs']).maps[-1].mean((2, 3))
        acc = (linear(feats).argmax(1) == labels(batch)).float().mean().item() * 100
        model.train()
        return dict(val_top1=acc)
    head = model.heads['cls']
    feats = model._task_features(batch['inputs'], ('cls', ))[0]['cls']
    _, out, _ = head.image_features(model, feats, batch['data_samples'])
    names, _ = model.text_features(head.class_names, 'classification')
    cos = F.normalize(out[:, 0], dim=-1) @ F.normalize(names, dim=-1).t()
    ids, mask = model.encode_texts(head.class_names)
    text = model.text_encoder.encode(ids, mask) * mask[..., None]
    model.train()
    return dict(val_top1=(cos.argmax(1) == labels(batch)).float().mean().item() * 100,
                image_spe_cos=mean_offdiag_cos(out[:, 0]),
                class_name_cos=mean_offdiag_cos(names),
                text_encoder_cos=mean_offdiag_cos(text.sum(1)),
                logit_spread=((cos.max(1).values - cos.min(1).values).mean()
                              * head.logit_scale()).item(),
                scale=head.logit_scale().item())


def grad_norms(model, batch):
    model.zero_grad()
    model(**batch, mode='loss')['loss_cls'].backward()
    norms = {}
    for name, p in model.named_parameters():
        if p.grad is not None:
            part = name.split('.')[0]
            norms[part] = norms.get(part, 0.0) + p.grad.pow(2).sum().item()
    return {part: round(v ** 0.5, 6) for part, v in norms.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=TINY)
    parser.add_argument('--checkpoint')
    parser.add_argument('--images', type=int, default=64)
    parser.add_argument('--train-steps', type=int, default=0)
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--slow-mult', type=float, default=1.0)
    parser.add_argument('--linear', action='store_true')
    parser.add_argument('--every', type=int, default=10)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    set_random_seed(args.seed)
    with DefaultScope.overwrite_default_scope('modzoo'):
        model = MODELS.build(cfg.model)
        train, val = cls_dataset(cfg, 'train'), cls_dataset(cfg, 'val')
    if args.checkpoint:
        state = torch.load(args.checkpoint, map_location='cpu', weights_only=False)
        model.load_state_dict(state.get('state_dict', state))
    step = len(val) // args.images or 1
    val_batch = model.data_preprocessor(
        pseudo_collate([val[i] for i in range(0, len(val), step)][:args.images]), False)
    linear = torch.nn.Linear(model.backbone.embed_dim, len(model.heads['cls'].class_names)) \
        if args.linear else None
    model.train()
    if args.checkpoint:
        batch = model.data_preprocessor(
            pseudo_collate([train[i] for i in range(args.batch_size)]), True)
        print(json.dumps(dict(checkpoint=args.checkpoint, **statistics(model, val_batch),
                              grad_norm=grad_norms(model, batch))))
    if not args.train_steps:
        return
    slow = [p for n, p in model.named_parameters() if n.startswith(CANDIDATE_SIDE)]
    fast = [p for n, p in model.named_parameters() if not n.startswith(CANDIDATE_SIDE)]
    groups = [dict(params=fast), dict(params=slow, lr=args.lr * args.slow_mult)]
    if linear is not None:
        groups = [dict(params=[*model.backbone.parameters(), *linear.parameters()])]
    optim = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.05)
    draw = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for it in range(1, args.train_steps + 1):
        idx = torch.randint(len(train), (args.batch_size, ), generator=draw).tolist()
        batch = model.data_preprocessor(pseudo_collate([train[i] for i in idx]), True)
        if linear is not None:
            feats = model.backbone(batch['inputs']).maps[-1].mean((2, 3))
            loss = F.cross_entropy(linear(feats), labels(batch))
        else:
            loss = model(**batch, mode='loss')['loss_cls']
        optim.zero_grad()
        loss.backward()
        optim.step()
        if it % args.every == 0 or it == args.train_steps:
            print(json.dumps(dict(step=it, seconds=round(time.perf_counter() - start, 1),
                                  lr=args.lr, slow_mult=args.slow_mult, linear=args.linear,
                                  loss=round(loss.item(), 4),
                                  **{k: round(v, 4) for k, v in
                                     statistics(model, val_batch, linear).items()})),
                  flush=True)


if __name__ == '__main__':
    main()
