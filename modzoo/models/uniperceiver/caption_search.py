"""Autoregressive caption decoding: greedy and beam search over a next-token log-prob fn.

``step(ids, rows)`` gets the token ids so far [R, t] (``<s>`` first) and, for each of the R
rows, the index of the image it continues [R]; it returns next-token log-probabilities
[R, V]. Tokens in ``banned`` are never produced; ``</s>`` ends a caption.
"""
from typing import Callable, Sequence

import torch
from torch import Tensor

StepFn = Callable[[Tensor, Tensor], Tensor]


def _ban(logp: Tensor, banned: Sequence[int]) -> Tensor:
    if banned:
        logp = logp.clone()
        logp[:, list(banned)] = float('-inf')
    return logp


@torch.no_grad()
def greedy_search(step: StepFn, batch: int, bos: int, eos: int, pad: int, max_length: int,
                  banned: Sequence[int] = (), device=None) -> Tensor:
    """Most probable next token at every step -> ids [B, <= max_length] (``<s>`` first,
    ``pad`` after ``</s>``)."""
    ids = torch.full((batch, 1), bos, dtype=torch.long, device=device)
    rows = torch.arange(batch, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    while ids.shape[1] < max_length and not done.all():
        nxt = _ban(step(ids, rows), banned).argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
        ids = torch.cat([ids, nxt[:, None]], 1)
        done |= nxt == eos
    return ids


@torch.no_grad()
def beam_search(step: StepFn, batch: int, beam_size: int, bos: int, eos: int, pad: int,
                max_length: int, banned: Sequence[int] = (), device=None) -> Tensor:
    """Beam search keeping ``beam_size`` hypotheses per image, ranked by the sum of their
    tokens' log-probabilities (no length penalty, so beam 1 is greedy search); a finished
    hypothesis keeps its score. -> ids of the best hypothesis [B, <= max_length]."""
    k = beam_size
    ids = torch.full((batch * k, 1), bos, dtype=torch.long, device=device)
    rows = torch.arange(batch, device=device).repeat_interleave(k)
    scores = torch.full((batch, k), float('-inf'), device=device)
    scores[:, 0] = 0.0                           # one live hypothesis per image at first
    done = torch.zeros(batch * k, dtype=torch.bool, device=device)
    while ids.shape[1] < max_length and not done.all():
        logp = _ban(step(ids, rows), banned)                                  # [B*k, V]
        vocab = logp.shape[1]
        # a finished hypothesis extends only with pad, at no cost
        logp = torch.where(done[:, None], torch.full_like(logp, float('-inf')), logp)
        logp[done, pad] = 0.0
        total = (scores.reshape(-1, 1) + logp).reshape(batch, k * vocab)
        scores, flat = total.topk(k, dim=1)                                   # [B, k]
        parent = (flat // vocab + torch.arange(batch, device=device)[:, None] * k).reshape(-1)
        token = (flat % vocab).reshape(-1)
        ids = torch.cat([ids[parent], token[:, None]], 1)
        done = done[parent] | (token == eos)
    best = scores.argmax(1) + torch.arange(batch, device=device) * k
    return ids[best]
