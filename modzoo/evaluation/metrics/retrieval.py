"""Image-text retrieval recall R@K in both directions, in memory linear in the candidates."""
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from modzoo.registry import METRICS
from .base import TaskMetric


def retrieval_ranks(images: torch.Tensor, texts: torch.Tensor, owner: torch.Tensor,
                    chunk: int = 256):
    """Rank of the best true match of every query, both ways (0 = first).

    images: [N, C], texts: [T, C] embeddings (compared by cosine); owner: [T] long, the image
    of each text. Returns ``(i2t [N], t2i [T])``: for an image, how many texts score above its
    best-scoring own caption; for a text, how many images score above its own. Queries go in
    chunks of ``chunk``, so memory is ``chunk x candidates``, never ``N x T``. Ties count in the
    query's favour.
    """
    images, texts = F.normalize(images.float(), dim=-1), F.normalize(texts.float(), dim=-1)
    i2t, t2i = [], []
    for start in range(0, len(images), chunk):
        sims = images[start:start + chunk] @ texts.t()                          # [q, T]
        own = owner[None, :] == torch.arange(start, start + len(sims))[:, None]
        best = sims.masked_fill(~own, float('-inf')).amax(1, keepdim=True)      # [q, 1]
        i2t.append((sims > best).sum(1))
    for start in range(0, len(texts), chunk):
        sims = texts[start:start + chunk] @ images.t()                          # [q, N]
        true = sims.gather(1, owner[start:start + chunk, None])                 # [q, 1]
        t2i.append((sims > true).sum(1))
    return torch.cat(i2t), torch.cat(t2i)


@METRICS.register_module()
class RetrievalMetric(TaskMetric):
    """Recall@K of image-to-text and text-to-image retrieval over the whole evaluated set.

    Every image of the task brings ``pred_image_embedding`` [C] and
    ``pred_text_embeddings`` [n_i, C] (one per caption); all captions of the set are the
    candidates of an image query (a hit when any of its own captions is in the top K) and all
    images the candidates of a caption query. Keys ``<task>/i2t_R@K``, ``<task>/t2i_R@K``
    (percent) and ``<task>/R_mean``. Fewer images than the largest K raises.

    Args:
        topk: the K values (default 1, 5, 10).
    """

    def __init__(self, task: str, topk: Sequence[int] = (1, 5, 10), **kwargs):
        super().__init__(task, **kwargs)
        self.topk = tuple(int(k) for k in topk)
        if not self.topk or min(self.topk) < 1:
            raise ValueError(f'RetrievalMetric: topk must be positive integers, got {topk!r}')

    def sample_stats(self, sample: dict) -> dict:
        texts = self.field(sample, 'pred_text_embeddings')
        if texts.ndim != 2 or len(texts) == 0:
            raise ValueError(f"RetrievalMetric: pred_text_embeddings of {sample.get('img_path')}"
                             f' must be [n_captions >= 1, C], got {tuple(texts.shape)}')
        return dict(image=self.field(sample, 'pred_image_embedding').cpu().float().numpy(),
                    texts=texts.cpu().float().numpy())

    def summarize(self, stats: list) -> dict:
        if len(stats) < max(self.topk):
            raise ValueError(f"RetrievalMetric: task '{self.task}' has {len(stats)} images, "
                             f'fewer than the largest K of R@K {self.topk}; evaluate on more '
                             'images or lower topk')
        images = torch.from_numpy(np.stack([s['image'] for s in stats]))
        texts = torch.from_numpy(np.concatenate([s['texts'] for s in stats]))
        owner = torch.cat([torch.full((len(s['texts']), ), i) for i, s in enumerate(stats)])
        i2t, t2i = retrieval_ranks(images, texts, owner)
        metrics = {}
        for name, ranks in (('i2t', i2t), ('t2i', t2i)):
            for k in self.topk:
                metrics[f'{name}_R@{k}'] = 100 * (ranks < k).double().mean().item()
        metrics['R_mean'] = float(np.mean(list(metrics.values())))
        return metrics
