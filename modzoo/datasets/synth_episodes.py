"""Episodes of SynthScenes dense tasks for Chameleon meta-training and evaluation.

A pool of scenes is rendered once (``make_scene``) with every family's label channels
(``modzoo.datasets.synth.dense_tasks``). Episode ``i`` is drawn from its own generator seeded
with (seed, i), so any sampler (mmengine's ``DefaultSampler`` / ``InfiniteSampler``, which
shard indices over DDP ranks) gives every rank different, reproducible episodes:

1. a task type with ``type_weights`` (official: base 1, continuous 3, categorical 3), then a
   family of that type uniformly;
2. ``channels`` sub-tasks of the family (without repetition where it has that many);
3. per channel, ``shot`` support and ``query`` query scenes, disjoint (for categorical
   channels, scenes where the class is present; figure families: scenes with a figure);
4. label augmentation (continuous and base channels, p=0.8): a random monotone remapping of
   the channel's values shared by its support and query labels.
"""
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from modzoo.models.chameleon import LOSS_TYPES
from modzoo.registry import DATASETS
from .synth import make_scene
from .synth.dense_tasks import FAMILIES, FAMILY_INDEX, FIRST_TASK, NOISE_SIGMA, family_labels

FIGURE_FAMILIES = ('parts', 'keypoints', 'keypoints_semantic')


def augment_label(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random monotone remap of [0, 1] values: a power (gamma in [1/2, 2]) or a sigmoid
    contrast, the same for all of the channel's maps. y [..., H, W] -> same shape."""
    if rng.random() < 0.5:
        return y ** np.exp(rng.uniform(-np.log(2), np.log(2)))
    gain, centre = rng.uniform(4, 10), rng.uniform(0.3, 0.7)
    lo, hi = (1 / (1 + np.exp(-gain * (v - centre))) for v in (0., 1.))
    return (1 / (1 + np.exp(-gain * (y - centre))) - lo) / (hi - lo)


@DATASETS.register_module()
class SynthEpisodes(Dataset):
    """Episodes ``dict(x_s [T, N, 3, S, S], y_s [T, N, 1, S, S], x_q [T, M, 3, S, S],
    y_q / mask [T, M, 1, S, S], t_idx [T], g_idx [T], loss_type [T], task_name)``, images in
    [0, 1] (``EpisodePreprocessor`` normalises them).

    Args:
        num_scenes: scenes rendered into the pool.
        size: image side S.
        scene_seed: seed of the scenes (disjoint seeds give disjoint pools).
        families: families to draw from (default: all of ``FAMILIES``).
        exclude_families: families left out (leave-task-out meta-training).
        channels: sub-tasks per episode (T).
        shot, query: support (N) and query (M) images per channel.
        type_weights: sampling weight of each task type.
        label_augmentation: remap continuous/base labels at random (training).
        length: number of episodes (indices).
        seed: episode seed.
    """

    def __init__(self, num_scenes: int = 400, size: int = 32, scene_seed: int = 0,
                 families: Optional[Sequence[str]] = None,
                 exclude_families: Sequence[str] = (), channels: int = 4, shot: int = 4,
                 query: int = 4, type_weights: Optional[Dict[str, float]] = None,
                 label_augmentation: bool = True, length: int = 100000, seed: int = 0):
        names = list(families) if families is not None else [f.name for f in FAMILIES]
        unknown = [n for n in list(names) + list(exclude_families) if n not in FAMILY_INDEX]
        if unknown:
            raise ValueError(f'SynthEpisodes: unknown task families {unknown}; expected names '
                             f'from {list(FAMILY_INDEX)}')
        self.families = [FAMILIES[FAMILY_INDEX[n]] for n in names if n not in exclude_families]
        if not self.families:
            raise ValueError('SynthEpisodes: no task family left after exclude_families')
        weights = dict(base=1., continuous=3., categorical=3., **(type_weights or {}))
        kinds = sorted({f.kind for f in self.families})
        self.kinds, p = kinds, np.array([weights[k] for k in kinds])
        self.kind_p = p / p.sum()
        self.size, self.channels, self.shot, self.query = size, channels, shot, query
        self.label_augmentation, self.length, self.seed = label_augmentation, length, seed
        self._render(num_scenes, scene_seed)

    def _render(self, num_scenes, scene_seed):
        images, labels, masks, figure = [], {}, {}, []
        for i in range(num_scenes):
            scene, rendering = make_scene(scene_seed, i, self.size)
            images.append(rendering.image)
            figure.append(any(o.cls == 'figure' for o in scene.objects))
            for name, (y, m) in family_labels(scene, rendering).items():
                labels.setdefault(name, []).append(y)
                masks.setdefault(name, []).append(m)
        self.images = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
        self.labels = {k: np.stack(v) for k, v in labels.items()}   # [P, K, S, S]
        self.masks = {k: np.stack(v) for k, v in masks.items()}
        self.figure = np.flatnonzero(figure)
        need = self.shot + self.query
        if len(self.figure) < need and any(f.name in FIGURE_FAMILIES for f in self.families):
            raise ValueError(f'SynthEpisodes: {len(self.figure)} of {num_scenes} scenes hold a '
                             f'figure, fewer than shot + query = {need}; render more scenes')

    def __len__(self):
        return self.length

    def candidates(self, family: str, channel: int) -> np.ndarray:
        """Pool indices an episode of this channel may use."""
        pool = self.figure if family in FIGURE_FAMILIES else np.arange(len(self.images))
        if family in ('semseg', 'parts'):
            present = self.labels[family][pool, channel].reshape(len(pool), -1).max(1) > 0
            if present.sum() >= self.shot + self.query:
                pool = pool[present]
        return pool

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, index])
        kind = self.kinds[rng.choice(len(self.kinds), p=self.kind_p)]
        fams = [f for f in self.families if f.kind == kind]
        family = fams[rng.integers(len(fams))]
        return self.episode(family.name, rng)

    def episode(self, family: str, rng: np.random.Generator,
                channels: Optional[Sequence[int]] = None) -> dict:
        """An episode of ``family`` (its ``channels``, or ``self.channels`` drawn at random)."""
        fam = FAMILIES[FAMILY_INDEX[family]]
        if channels is None:
            channels = rng.choice(fam.channels, self.channels,
                                  replace=fam.channels < self.channels)
        xs, ys, ms = [], [], []
        for c in channels:
            idx = rng.choice(self.candidates(family, c), self.shot + self.query, replace=False)
            x = self.images[idx]
            if family == 'denoising':
                noise = rng.normal(0, NOISE_SIGMA, x.shape).astype(np.float32)
                x = (x + torch.from_numpy(noise)).clamp(0, 1)
            y = self.labels[family][idx, c]
            if self.label_augmentation and fam.kind != 'categorical' and rng.random() < 0.8:
                y = augment_label(y, rng)
            xs.append(x)
            ys.append(torch.from_numpy(np.ascontiguousarray(y, np.float32))[:, None])
            ms.append(torch.from_numpy(self.masks[family][idx, c])[:, None])
        x, y, m = torch.stack(xs), torch.stack(ys), torch.stack(ms)
        n = self.shot
        channels = torch.as_tensor(np.asarray(channels), dtype=torch.long)
        return dict(x_s=x[:, :n], y_s=y[:, :n], x_q=x[:, n:], y_q=y[:, n:], mask=m[:, n:],
                    t_idx=FIRST_TASK[family] + channels,
                    g_idx=torch.full_like(channels, FAMILY_INDEX[family]),
                    loss_type=torch.full_like(channels, LOSS_TYPES[fam.loss]),
                    task_name=family)
