"""Per-task, per-layer expert usage of the mixture-of-experts layers, saved in the work dir."""
import json
import os.path as osp
from typing import Dict, Optional

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import nn

from modzoo.models.layers.moe_router import TaskRouter
from modzoo.registry import HOOKS
from ..checkpoint import write_atomic


def router_usage(model: nn.Module) -> Dict[str, TaskRouter]:
    """``{layer name: router}`` of every :class:`TaskRouter` in ``model`` (the layer name
    is the router's module name without ``.router``, e.g. ``backbone.blocks.1.mlp``)."""
    if is_model_wrapper(model):
        model = model.module
    return {name[:-len('.router')] if name.endswith('.router') else name: module
            for name, module in model.named_modules() if isinstance(module, TaskRouter)}


def usage_report(routers: Dict[str, TaskRouter], counts: Dict[str, torch.Tensor],
                 **info) -> dict:
    """The JSON document of :class:`ExpertUsageHook` for ``counts`` [T, E] per layer."""
    return dict(**info, layers={
        name: dict(tasks=list(router.task_names), top_k=router.top_k,
                   counts=counts[name].tolist())
        for name, router in routers.items()})


@HOOKS.register_module()
class ExpertUsageHook(Hook):
    """Writes how many tokens each task sent to each expert of every MoE layer:
    ``expert_usage_train.json`` after training, ``expert_usage_val.json`` after each
    validation and ``expert_usage_test.json`` after testing, in the work dir.

    The counts come from the routers' ``usage`` buffers [T, E] (the top-k choices, so a
    task's row sums to k times its tokens); each file holds its own phase of this run only
    (the validations inside training are not in the training counts; after ``--resume`` the
    training counts start at the resume). Document::

        {"phase": "val", "iter": 600, "layers": {"backbone.blocks.0.attn": {
            "tasks": ["cls", ...], "top_k": 3, "counts": [[E ints] per task]}, ...}}

    In a distributed run the counts are rank 0's (DDP broadcasts buffers from rank 0).
    ``tools/analysis/expert_usage.py`` draws them; ``tools/extract.py --usage`` reads them.
    """
    priority = 'LOW'

    def __init__(self):
        self._mark: Optional[Dict[str, torch.Tensor]] = None  # counts at the phase start
        self._train: Optional[Dict[str, torch.Tensor]] = None  # training counts, while training

    def _counts(self, runner) -> Dict[str, torch.Tensor]:
        return {name: router.usage.detach().cpu().clone()
                for name, router in router_usage(runner.model).items()}

    def _since_mark(self, runner) -> Dict[str, torch.Tensor]:
        """Counts since the last mark; moves the mark to now."""
        now = self._counts(runner)
        since = {name: now[name] - self._mark[name] for name in now} if self._mark else now
        self._mark = now
        return since

    def _bank_train(self, runner):
        for name, since in self._since_mark(runner).items():
            self._train[name] += since

    def _write(self, runner, phase: str, counts: Dict[str, torch.Tensor]):
        routers = router_usage(runner.model)
        if not routers or not is_main_process():
            return
        report = usage_report(routers, counts, phase=phase, iter=runner.iter)
        path = osp.join(runner.work_dir, f'expert_usage_{phase}.json')
        write_atomic(path, json.dumps(report).encode())

    def before_train(self, runner):
        self._mark = self._counts(runner)
        self._train = {name: torch.zeros_like(c) for name, c in self._mark.items()}

    def before_val_epoch(self, runner):
        if self._train is not None:
            self._bank_train(runner)
        self._mark = self._counts(runner)

    def after_val_epoch(self, runner, metrics=None):
        self._write(runner, 'val', self._since_mark(runner))

    def after_train(self, runner):
        self._bank_train(runner)
        self._write(runner, 'train', self._train)
        self._train = None

    def before_test_epoch(self, runner):
        self._mark = self._counts(runner)

    def after_test_epoch(self, runner, metrics=None):
        self._write(runner, 'test', self._since_mark(runner))
