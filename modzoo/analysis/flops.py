"""Parameters and FLOPs of (mixture-of-experts) models, counting only what a task uses.

Like fvcore, one multiply-add is one FLOP. ``FLOP_HANDLES`` adds to fvcore's own handles
the ones it lacks: ``aten::scaled_dot_product_attention`` (fused attention in timm and in
:class:`MixtureOfAttentionHeads`) and the MoE layers' grouped expert matmuls, which run
over the routed (token, expert) pairs only, so they count just the experts a token uses.
"""
import math
import warnings
from typing import Any, Dict, List, Optional, Sequence

import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import get_shape
from torch import nn

from modzoo.heads.dense import DenseHead
from modzoo.models.backbones.moe_vit import expert_param_names
from modzoo.models.layers.mixture_of_attention import MixtureOfAttentionHeads
from modzoo.models.layers.moe_flops import MOE_FLOP_HANDLES
from modzoo.models.layers.moe_mlp import MoEMlp
from modzoo.models.layers.moe_router import statistics_paused
from modzoo.structures import TaskDataSample


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """MACs of ``scaled_dot_product_attention(q, k, v)`` with q [..., L, d], k [..., S, d],
    v [..., S, d_v]: L * S * d for the scores and L * S * d_v for the weighted sum, times the
    (broadcast) leading size. The softmax is not counted (fvcore counts no elementwise op)."""
    q, k, v = (get_shape(inputs[i]) for i in range(3))
    lead = torch.broadcast_shapes(tuple(q[:-2]), tuple(k[:-2]))
    return math.prod(lead) * q[-2] * k[-2] * (q[-1] + v[-1])


FLOP_HANDLES = {**MOE_FLOP_HANDLES, 'aten::scaled_dot_product_attention': sdpa_flop_jit}


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def active_params(module: nn.Module, task: Optional[str] = None) -> int:
    """Parameters one token of ``task`` uses: all parameters outside the MoE layers' experts
    and routers, k of the E experts of every MoE layer, and the router rows of ``task``."""
    total = count_params(module)
    for layer in module.modules():
        if not isinstance(layer, (MoEMlp, MixtureOfAttentionHeads)):
            continue
        router = layer.router
        experts = sum(getattr(layer, n).numel() for n in expert_param_names(layer))
        routers = sum(p.numel() for p in router.parameters())
        rows = 1 if router.shared or task is None else router.num_tasks
        total += experts * router.top_k // layer.num_experts - experts + routers // rows - routers
    return total


def count_flops(module: nn.Module, inputs: tuple) -> int:
    """FLOPs (multiply-adds) of ``module(*inputs)`` in evaluation mode, with ``FLOP_HANDLES``."""
    was_training = module.training
    module.eval()
    try:
        # statistics paused: the counting pass leaves the routers' usage alone
        with statistics_paused(), warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter('ignore')  # tracer warnings: routing is data-dependent
            analysis = FlopCountAnalysis(module, inputs).set_op_handle(**FLOP_HANDLES)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(analysis.total())
    finally:
        module.train(was_training)


class TaskForward(nn.Module):
    """``x -> head(backbone(x, task))`` of one task of a :class:`MultiTaskModel`, for tracing.

    Dense heads predict at the input size. A two-stage detector (a head with ``proposals``,
    :class:`MaskRCNNHead`) runs its test path on the image: RPN, box head on the RPN's
    proposals, mask head on the detections, so its count depends on how many of them the
    image and the weights yield (at most ``post_nms_top_n`` and ``detections_per_img``).
    """

    def __init__(self, model: nn.Module, task: str):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, x: torch.Tensor):
        feats = self.model._task_features(x, (self.task, ))[0][self.task]
        head = self.model.heads[self.task]
        if isinstance(head, DenseHead):
            return head(feats, x.shape[-2:])
        if hasattr(head, 'proposals'):
            size = tuple(x.shape[-2:])
            sample = TaskDataSample(metainfo=dict(img_shape=size, batch_input_shape=size))
            det = head.proposals(feats, [sample], with_embeddings=False)[0]
            return det.bboxes, det.scores, det.mask_logits
        return head(feats)


def model_summary(model: nn.Module, img_size: Sequence[int],
                  tasks: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Parameters and GFLOPs of a :class:`MultiTaskModel` for one image [1, 3, H, W].

    Returns ``{'params': total, 'tasks': {task: {'active_params', 'gflops'}}}``: a task's
    active parameters are those of :func:`active_params` in the backbone (and neck) plus
    its own head; its GFLOPs those of backbone, neck and head for that task.
    """
    x = torch.randn(1, 3, *img_size, device=next(model.parameters()).device)
    shared = [m for name, m in model.named_children() if name != 'heads']
    report = {}
    for task in tasks or model.tasks:
        params = sum(active_params(m, task) for m in shared) + count_params(model.heads[task])
        report[task] = dict(active_params=params,
                            gflops=count_flops(TaskForward(model, task), (x, )) / 1e9)
    return dict(params=count_params(model), tasks=report)
