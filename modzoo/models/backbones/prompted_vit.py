"""MULTI-LANE backbone: a frozen timm ViT plus one light pathway per task.

De Min et al., "Less is more: Summarizing Patch Tokens for efficient Multi-Label
Class-Incremental Learning" (CoLLAs 2024); official code ``tdemin16/multi-lane``.

Two streams run through every block of the frozen ViT:

* the frozen stream: the ordinary tokens [B, N, D], computed once, without gradient;
* one pathway per task: the pretrained CLS token (no position embedding) and S summary tokens.
  At each layer the task's selectors summarise the block's LayerNorm-ed frozen tokens
  (``summarize``); CLS and summaries go through the block's frozen attention with the task's
  prefix prompts on K and V (first ``num_prompt_layers`` blocks), then its frozen MLP.

Drop & replace (default, as the official code): after attention only the CLS output is kept;
the summaries are dropped and the selectors put back for the next layer. The official code
puts back the LayerNorm-ed selectors, so their attention residual is s + LN1(s)
(``replace_normed=True``); ``replace_normed=False`` leaves them unchanged. Either way the
selectors never see the image, so they advance once per task ([T, S, D]) rather than once per
image, and only the CLS token asks a query. Without drop & replace (``drop_and_replace=False``,
the paper's ablation) the summaries of layer 0 travel on as ordinary tokens [T*B, 1+S, D].

All pathways run batched, task-major along the batch axis ([T*B, ...]), in one forward.
"""
import operator

import timm
import torch
from einops import rearrange
from torch import nn

from modzoo.models.layers.prefix_prompts import PrefixPrompts, prefix_attention
from modzoo.models.layers.summarizer import PatchSelectors, summarize
from modzoo.registry import MODELS
from modzoo.structures import Features


def _attention_residual(blk, tokens, prefix, num_queries=None):
    """tokens [M, L, D] (LayerNorm-ed) -> the block's residual attention update [M, Q, D]."""
    return blk.drop_path1(blk.ls1(prefix_attention(blk.attn, tokens, prefix, num_queries)))


def _mlp_step(blk, tokens):
    """tokens [..., D] -> tokens after the block's residual MLP."""
    return tokens + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(tokens))))


@MODELS.register_module()
class MultiLaneViT(nn.Module):
    """Frozen timm ViT with per-task pathways of selector-summarised tokens.

    Trainable: ``selectors.tokens`` [num_tasks, S, D] and ``prompts[i].kv``
    [2, num_tasks, P, H, Dh] for the first ``num_prompt_layers`` blocks. The ViT (``vit``,
    timm key names, so timm checkpoints load into it) is frozen.

    Args:
        arch: timm model name of a ViT with a class token, e.g. ``'vit_base_patch16_224'``.
        num_tasks: pathways to allocate (one per incremental task).
        num_selectors: S, summary tokens per task.
        num_prompts: P, prefix prompts per task and layer.
        num_prompt_layers: L, the first L blocks get prefix prompts.
        drop_and_replace: drop the summaries after each attention and summarise again.
        replace_normed: with drop & replace, put back the LayerNorm-ed selectors as the
            official code does (True), or leave the selectors unchanged (False).
        pretrained: load timm's pretrained weights for ``arch``.
        vit_cfg: extra keyword arguments of ``timm.create_model`` (e.g. ``embed_dim``,
            ``depth``, ``num_heads``, ``img_size``, ``pretrained_cfg_overlay``).

    Not an mmengine ``BaseModule`` on purpose: a model's ``init_weights()`` would call timm's
    ``VisionTransformer.init_weights`` and re-draw the pretrained weights.
    """

    def __init__(self, arch='vit_base_patch16_224', num_tasks=1, num_selectors=20,
                 num_prompts=20, num_prompt_layers=5, drop_and_replace=True,
                 replace_normed=True, pretrained=False, vit_cfg=None):
        super().__init__()
        self.vit = timm.create_model(arch, pretrained=pretrained, num_classes=0,
                                     **(vit_cfg or {}))
        self.vit.requires_grad_(False)
        depth = len(self.vit.blocks)
        attn = self.vit.blocks[0].attn
        if getattr(self.vit, 'cls_token', None) is None:
            raise ValueError(f"MultiLaneViT: arch '{arch}' has no class token; the pathways "
                             'start from the pretrained CLS token')
        if getattr(attn, 'gate', None) is not None or not hasattr(attn, 'qkv'):
            raise ValueError(f"MultiLaneViT: arch '{arch}' does not use timm's plain "
                             'Attention (one qkv projection, no gate)')
        if not 0 <= num_prompt_layers <= depth:
            raise ValueError(f'MultiLaneViT: num_prompt_layers={num_prompt_layers}, expected '
                             f'0..{depth} (the ViT has {depth} blocks)')
        if num_tasks < 1 or num_selectors < 1:
            raise ValueError(f'MultiLaneViT: num_tasks={num_tasks} and num_selectors='
                             f'{num_selectors} must both be >= 1')

        self.num_tasks = num_tasks
        self.drop_and_replace = drop_and_replace
        self.replace_normed = replace_normed
        self.selectors = PatchSelectors(num_tasks, num_selectors, self.vit.embed_dim)
        self.prompts = nn.ModuleList(
            PrefixPrompts(num_tasks, num_prompts, attn.num_heads, attn.head_dim)
            for _ in range(num_prompt_layers))
        # Index of the task being learnt; pathways 0..task_id are in use.
        self.register_buffer('task_id', torch.tensor(0))

    def next_task(self):
        """Open pathway t+1, starting from the parameters of pathway t."""
        t = int(self.task_id) + 1
        if t >= self.num_tasks:
            raise RuntimeError(f'MultiLaneViT: all num_tasks={self.num_tasks} pathways are '
                               'in use; build the model with more tasks')
        self.task_id.fill_(t)
        self.selectors.copy_task(t - 1, t)
        for prompts in self.prompts:
            prompts.copy_task(t - 1, t)

    def params_per_task(self):
        """Trainable parameters one task adds: S*D + L*2*P*D."""
        return self.selectors.tokens[0].numel() + sum(p.kv[:, 0].numel() for p in self.prompts)

    def task_list(self, tasks=None):
        """None -> pathways 0..task_id; an int -> that pathway; else the given indices."""
        if tasks is None:
            return list(range(int(self.task_id) + 1))
        expected = f'a pathway index or a non-empty list of them, in 0..{self.num_tasks - 1}'
        try:
            indices = [operator.index(t) for t in ([tasks] if isinstance(tasks, int) else tasks)]
        except TypeError:
            raise TypeError(f'MultiLaneViT: task={tasks!r}, expected {expected}') from None
        if not indices or not all(0 <= t < self.num_tasks for t in indices):
            raise ValueError(f'MultiLaneViT: task={tasks!r}, expected {expected}')
        return indices

    def forward_tokens(self, x, tasks=None):
        """Run the frozen stream once and the pathways of ``tasks`` beside it.

        x:       [B, 3, H, W] images
        tasks:   pathways to run (see ``task_list``), T of them
        returns: frozen tokens [B, N, D] and pathway CLS tokens [B, T, D], both after the
                 ViT's final (frozen) norm
        """
        tasks = self.task_list(tasks)
        vit = self.vit
        with torch.no_grad():
            x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
        batch = x.shape[0]
        cls = vit.cls_token.expand(len(tasks) * batch, -1, -1)     # [T*B, 1, D]
        sel = self.selectors(tasks)                                # [T, S, D]
        for i, blk in enumerate(vit.blocks):
            with torch.no_grad():
                x_normed = blk.norm1(x)                            # what the selectors read
                x = x + blk.drop_path1(blk.ls1(blk.attn(x_normed)))
                x = _mlp_step(blk, x)
            prefix = self.prompts[i](tasks, batch) if i < len(self.prompts) else None
            if self.drop_and_replace:
                cls, sel = self._drop_and_replace_block(blk, x_normed, cls, sel, prefix)
            elif i == 0:
                tokens = self._summarize_block(blk, x_normed, cls, sel, prefix)
            else:
                tokens = tokens + _attention_residual(blk, blk.norm1(tokens), prefix)
                tokens = _mlp_step(blk, tokens)
        if not self.drop_and_replace:
            cls = tokens[:, :1]
        with torch.no_grad():
            x = vit.norm(x)
        return x, rearrange(vit.norm(cls), '(t b) 1 d -> b t d', b=batch)

    def _drop_and_replace_block(self, blk, x_normed, cls, sel, prefix):
        """x_normed [B, N, D], cls [T*B, 1, D], sel [T, S, D] -> cls, sel after the block."""
        cls_normed, sel_normed = blk.norm1(cls), blk.norm1(sel)
        summary = summarize(sel_normed, x_normed)[0].flatten(0, 1)            # [T*B, S, D]
        queries = torch.cat((cls_normed, summary), dim=1)
        cls = cls + _attention_residual(blk, queries, prefix, num_queries=1)
        if self.replace_normed:
            sel = sel + blk.drop_path1(blk.ls1(sel_normed))
        return _mlp_step(blk, cls), _mlp_step(blk, sel)

    def _summarize_block(self, blk, x_normed, cls, sel, prefix):
        """First block without drop & replace: [CLS, summaries] become the pathway tokens.

        Returns tokens [T*B, 1+S, D]; as in the official code the attention output of the
        summaries is added to the selectors they came from.
        """
        summary = summarize(blk.norm1(sel), x_normed)[0].flatten(0, 1)     # [T*B, S, D]
        tokens = torch.cat((cls, sel.repeat_interleave(x_normed.shape[0], dim=0)), dim=1)
        queries = torch.cat((blk.norm1(cls), summary), dim=1)
        return _mlp_step(blk, tokens + _attention_residual(blk, queries, prefix))

    def forward(self, x, task=None):
        """x [B, 3, H, W] -> Features.

        maps:      (final frozen patch tokens [B, D, H/p, W/p],)
        cls_token: [B, 1+T, D]: the frozen stream's CLS, then the CLS of each pathway in
                   ``task`` (None: pathways 0..task_id), all after the final norm
        """
        frozen, pathways = self.forward_tokens(x, task)
        grid_h, _ = self.vit.patch_embed.dynamic_feat_size(x.shape[-2:])
        patches = frozen[:, self.vit.num_prefix_tokens:]
        return Features(maps=(rearrange(patches, 'b (h w) d -> b d h w', h=grid_h),),
                        cls_token=torch.cat((frozen[:, :1], pathways), dim=1))
