"""Chameleon (ECCV'24) and VTM (ICLR'23): dense prediction by matching a query image's tokens
with those of a few labelled support images.

An episode holds T label channels (each its own single-channel sub-task, with its own bias
set ``t_idx`` and task group ``g_idx``), N support and M query images per channel:
support images X_S [B, T, N, C, H, W], support labels Y_S [B, T, N, 1, H, W], query images
X_Q [B, T, M, C, H, W] -> query label logits [B, T, M, 1, H, W]. The image encoder (bias sets
picked by ``t_idx``) encodes both image sets; the label encoder the support labels; the
matching module mixes the support label tokens by image-token similarity; a DPT decoder
turns the query label tokens into a map.
"""
from typing import Dict, List, NamedTuple, Optional

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from mmengine.model import BaseModel
from timm.layers import resample_abs_pos_embed

from modzoo.registry import MODELS
from .layers.bias_sets import bias_set_parameters
from .layers.moe_losses import sum_aux_losses

# Loss type of each channel (the official per-task-type losses).
LOSS_L1, LOSS_BCE, LOSS_SPATIAL_SOFTMAX = 0, 1, 2
LOSS_TYPES = {'l1': LOSS_L1, 'bce': LOSS_BCE, 'spatial_softmax': LOSS_SPATIAL_SOFTMAX}


class Support(NamedTuple):
    """Encoded support set: per level w [B, T, N, n, Dw] and z [B, T, N, n, Dz]; the bias-set
    index t_idx [B, T] and task-group index g_idx [B, T] it was encoded with."""
    w: List[torch.Tensor]
    z: List[torch.Tensor]
    t_idx: torch.Tensor
    g_idx: torch.Tensor


def episode_losses(logits: torch.Tensor, labels: torch.Tensor, loss_type: torch.Tensor,
                   mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
    """The official loss of each channel's type, each averaged over its channels' pixels.

    logits, labels (in [0, 1]), mask: [B, T, M, 1, H, W]; loss_type [B, T] of ``LOSS_TYPES``.
    BCE (segmentation, keypoint heatmaps), spatial-softmax cross entropy over H*W (semantic
    keypoints) and L1 on the sigmoid (everything else). Returns ``loss_bce`` / ``loss_ssl`` /
    ``loss_con`` for the types present.
    """
    if mask is None:
        mask = torch.ones_like(labels)
    losses = {}
    for name, kind in (('loss_bce', LOSS_BCE), ('loss_ssl', LOSS_SPATIAL_SOFTMAX),
                       ('loss_con', LOSS_L1)):
        sel = loss_type == kind
        if not sel.any():
            continue
        x, y, m = logits[sel], labels[sel], mask[sel]               # [K, M, 1, H, W]
        if kind == LOSS_BCE:
            loss = m * F.binary_cross_entropy_with_logits(x, y, reduction='none')
        elif kind == LOSS_L1:
            loss = m * (x.sigmoid() - y).abs()
        else:
            x, y = (rearrange(t * m, 'k m c h w -> k (h w) m c') for t in (x, y))
            loss = F.cross_entropy(x, y, reduction='none')
        losses[name] = loss.mean()
    return losses


@MODELS.register_module()
class Chameleon(BaseModel):
    """Image encoder + label encoder + token matching + DPT label decoder.

    Args:
        image_encoder: config of a backbone with ``n_bias_sets`` (filled in), taking (x [B', C,
            H, W], task [B'] bias-set index), returning ``Features`` with 4 maps and having
            ``img_size`` / ``grid_size``: ``BiasSetBEiT`` (the official), ``ViT``, or
            ``MoEViT`` (one task per bias set: each sample is routed by its sub-task; its MoE
            auxiliary losses join the training losses, its routers the task parameters).
        label_encoder: config of a backbone with ``in_channels=1`` returning 4 maps (``ViT``).
        matching: config of a ``TokenMatching`` (its dims are filled in).
        decoder: config of a ``DPTLabelDecoder`` (``in_channels`` is filled in).
        n_tasks: bias sets of the image encoder (one per sub-task).
        n_task_groups: alpha rows when ``separate_alpha`` is False.
        separate_alpha: one alpha row per task instead of per group (LINEMOD).
        support_chunk_size: support images encoded at a time by ``encode_support`` (None: all).
        data_preprocessor: defaults to ``EpisodePreprocessor``.
    """

    def __init__(self, image_encoder: dict, label_encoder: dict, matching: dict, decoder: dict,
                 n_tasks: int, n_task_groups: int = 1, separate_alpha: bool = False,
                 support_chunk_size: Optional[int] = None, data_preprocessor: dict = None,
                 init_cfg: dict = None):
        super().__init__(init_cfg=init_cfg, data_preprocessor=MODELS.build(
            data_preprocessor or dict(type='EpisodePreprocessor')))
        self.image_encoder = MODELS.build({'n_bias_sets': n_tasks, **image_encoder})
        self.label_encoder = MODELS.build({'in_channels': 1, **label_encoder})
        self.matching = MODELS.build({
            'image_dim': self.image_encoder.embed_dim, 'label_dim': self.label_encoder.embed_dim,
            'n_alphas': n_tasks if separate_alpha else n_task_groups, **matching})
        self.decoder = MODELS.build({'in_channels': self.label_encoder.embed_dim, **decoder})
        self.n_tasks, self.n_task_groups = n_tasks, n_task_groups
        self.separate_alpha = separate_alpha
        self.support_chunk_size = support_chunk_size
        self._aux_losses = []   # the image encoder's auxiliary losses of the current pass

    # --- encoders -------------------------------------------------------------------------
    def encode_images(self, x: torch.Tensor, t_idx: torch.Tensor) -> List[torch.Tensor]:
        """x [B, T, N, C, H, W], t_idx [B, T] -> per level [B, T, N, n, Dw]."""
        B, T, N = x.shape[:3]
        task = repeat(t_idx, 'b t -> (b t n)', n=N)
        feats = self.image_encoder(x.flatten(0, 2), task)
        if feats.aux_losses:
            self._aux_losses.append(feats.aux_losses)
        maps = feats.maps
        self._check_levels('image_encoder', maps)
        return [rearrange(m, '(b t n) d h w -> b t n (h w) d', b=B, t=T) for m in maps]

    def encode_labels(self, y: torch.Tensor) -> List[torch.Tensor]:
        """y [B, T, N, 1, H, W] -> per level [B, T, N, n, Dz]."""
        B, T = y.shape[:2]
        maps = self.label_encoder(y.flatten(0, 2)).maps
        self._check_levels('label_encoder', maps)
        return [rearrange(m, '(b t n) d h w -> b t n (h w) d', b=B, t=T) for m in maps]

    def _check_levels(self, name, maps):
        if len(maps) != len(self.matching.matching):
            raise ValueError(f'Chameleon: the {name} returns {len(maps)} feature levels, the '
                             f'matching expects {len(self.matching.matching)} (set 4 distinct '
                             'out_indices)')

    def encode_support(self, x_s: torch.Tensor, y_s: torch.Tensor, t_idx: torch.Tensor,
                       g_idx: torch.Tensor, chunk_size: Optional[int] = None) -> Support:
        """Encode the support set, ``chunk_size`` images of each channel at a time (default
        ``support_chunk_size``; None: all at once), each chunk written into its slice of N,
        so the working memory beyond the encoded support does not grow with N."""
        if x_s.shape[2] == 0:
            raise ValueError('Chameleon: the support set is empty (N=0); at least one '
                             'labelled image is needed')
        N = x_s.shape[2]
        chunk = chunk_size or self.support_chunk_size or N
        w = z = None
        for i in range(0, N, chunk):
            w_i = self.encode_images(x_s[:, :, i:i + chunk], t_idx)
            z_i = self.encode_labels(y_s[:, :, i:i + chunk])
            if chunk >= N:
                w, z = w_i, z_i
                break
            if w is None:   # the whole support is written in place: no second copy of it
                w = [t.new_empty(t.shape[:2] + (N,) + t.shape[3:]) for t in w_i]
                z = [t.new_empty(t.shape[:2] + (N,) + t.shape[3:]) for t in z_i]
            for out, part in zip(w + z, w_i + z_i):
                out[:, :, i:i + chunk] = part
        return Support(w, z, t_idx, g_idx)

    def predict_query(self, support: Support, x_q: torch.Tensor) -> torch.Tensor:
        """x_q [B, T, M, C, H, W] -> label logits [B, T, M, 1, H, W]."""
        B, T, M = x_q.shape[:3]
        w_q = self.encode_images(x_q, support.t_idx)
        a_idx = support.t_idx if self.separate_alpha else support.g_idx
        z_q = self.matching(w_q, support.w, support.z, a_idx)
        h, w = self.image_encoder.grid_size
        maps = [rearrange(z, 'b t m (h w) d -> (b t m) d h w', h=h, w=w) for z in z_q]
        out = self.decoder(maps, x_q.shape[-2:])
        return rearrange(out, '(b t m) c h w -> b t m c h w', b=B, t=T)

    def forward_episode(self, x_s: torch.Tensor, y_s: torch.Tensor, x_q: torch.Tensor,
                        t_idx: torch.Tensor, g_idx: torch.Tensor) -> torch.Tensor:
        """The official ``forward``: X_S, Y_S, X_Q, t_idx, g_idx -> Y_Q logits
        [B, T, M, 1, H, W]."""
        check_episode(x_s, y_s, x_q, t_idx, g_idx)
        return self.predict_query(self.encode_support(x_s, y_s, t_idx, g_idx), x_q)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A label encoder position embedding stored at another size is resampled to this
        model's grid (resolution change); the image encoder resamples its own tables."""
        key = prefix + 'label_encoder.pos_embed'
        own = self.label_encoder.pos_embed
        if key in state_dict and state_dict[key].shape != own.shape:
            state_dict[key] = resample_abs_pos_embed(
                state_dict[key], self.label_encoder.patch_embed.grid_size,
                num_prefix_tokens=self.label_encoder.num_prefix_tokens)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # --- task-specific parameters ---------------------------------------------------------
    def task_parameters(self):
        """(name, parameter) tuned when adapting to a new task: the image encoder's bias
        sets, the alphas and the matching LayerNorm (official ``bias_parameters`` + defaults
        of ``train/optim.py``)."""
        encoder = self.image_encoder
        own = encoder.task_parameters() if hasattr(encoder, 'task_parameters') else \
            bias_set_parameters(encoder)
        params = [(f'image_encoder.{n}', p) for n, p in own]
        if self.matching.level_mix:
            params += [(f'matching.{n}', p) for n, p in self.matching.named_parameters()
                       if n.startswith(('alpha.', 'layernorm.'))]
        return params

    # --- mmengine -------------------------------------------------------------------------
    def forward(self, inputs: dict, data_samples=None, mode: str = 'tensor'):
        """inputs: an episode dict with x_s, y_s, x_q, t_idx, g_idx (and for 'loss' y_q,
        loss_type, optionally mask). 'tensor' -> logits [B, T, M, 1, H, W]; 'loss' -> the
        official losses (and the image encoder's auxiliary losses, summed over its passes);
        'predict' -> a list with one dict per episode (``pred`` sigmoid probabilities
        [T, M, 1, H, W] and, when given, ``gt``)."""
        self._aux_losses = []
        logits = self.forward_episode(inputs['x_s'], inputs['y_s'], inputs['x_q'],
                                      inputs['t_idx'], inputs['g_idx'])
        aux, self._aux_losses = sum_aux_losses(self._aux_losses), []
        if mode == 'tensor':
            return logits
        if mode == 'loss':
            return {**episode_losses(logits, inputs['y_q'], inputs['loss_type'],
                                     inputs.get('mask')), **aux}
        if mode == 'predict':
            out = [dict(pred=p) for p in logits.sigmoid()]
            for i, sample in enumerate(out):
                for key in ('y_q', 'loss_type', 'task_name'):
                    if key in inputs:
                        sample[key] = inputs[key][i]
            return out
        raise ValueError(f"Chameleon: mode='{mode}', expected 'loss', 'predict' or 'tensor'")


def check_episode(x_s, y_s, x_q, t_idx, g_idx):
    """Raise a clear error when the episode's tensors do not fit together."""
    if x_s.ndim != 6 or y_s.ndim != 6 or x_q.ndim != 6:
        raise ValueError(f'Chameleon: x_s, y_s, x_q must be [B, T, N, C, H, W]; got '
                         f'{list(x_s.shape)}, {list(y_s.shape)}, {list(x_q.shape)}')
    if x_s.shape[2] == 0:
        raise ValueError('Chameleon: the support set is empty (N=0); at least one labelled '
                         'image is needed')
    if y_s.shape[3] != 1:
        raise ValueError(f'Chameleon: support labels must have 1 channel per sub-task '
                         f'(split channels onto the T axis); got y_s {list(y_s.shape)}')
    if x_s.shape[:3] != y_s.shape[:3] or x_s.shape[-2:] != y_s.shape[-2:]:
        raise ValueError(f'Chameleon: support images {list(x_s.shape)} and labels '
                         f'{list(y_s.shape)} differ in [B, T, N] or size')
    if x_q.shape[:2] != x_s.shape[:2] or x_q.shape[3:] != x_s.shape[3:]:
        raise ValueError(f'Chameleon: query images {list(x_q.shape)} differ from the support '
                         f'images {list(x_s.shape)} in [B, T], channels or size')
    for name, idx in (('t_idx', t_idx), ('g_idx', g_idx)):
        if tuple(idx.shape) != tuple(x_s.shape[:2]):
            raise ValueError(f'Chameleon: {name} must be [B, T] = {list(x_s.shape[:2])}; got '
                             f'{list(idx.shape)}')
