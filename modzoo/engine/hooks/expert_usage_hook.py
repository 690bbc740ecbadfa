"""Per-task, per-layer expert usage of the mixture-of-experts layers, saved in the work dir."""
import json
import os.path as osp
from typing import Dict, Optional

import torch
from mmengine.dist import all_reduce, get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import nn

from modzoo.models.layers.moe_losses import MutualInformationLoss
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


class RankStatistics:
    """Makes the MoE statistics of every rank of a distributed run the run's own.

    DDP runs with ``broadcast_buffers=False``, so each rank's routers count only the tokens of
    its share of the data, and each rank's running estimates see only its batches.
    :meth:`sync` (called at the same points on every rank) all-reduces them:

    - ``usage`` [T, E]: the counts of all ranks, summed (each rank's increments since the
      last sync are added up; the counts then agree on every rank);
    - ``usage_ema`` and the MI loss's running P(t, e) (``joint``): averaged. Both are linear
      in their updates, so when every rank runs the same tasks in the same steps (the task-
      balanced sampler's rule in training) the average is the estimate from the rank-
      averaged batches, i.e. a global estimate. The MI loss therefore reads a global P(t, e),
      at most one sync old.
    """

    def __init__(self):
        self._synced: Optional[Dict[str, torch.Tensor]] = None  # agreed usage at last sync

    def start(self, model: nn.Module):
        """Remember the usage all ranks start from (before they count anything)."""
        if self._synced is None:
            self._synced = {n: r.usage.detach().clone() for n, r in router_usage(model).items()}

    @torch.no_grad()
    def sync(self, model: nn.Module):
        if get_world_size() == 1 or self._synced is None:
            return
        routers = router_usage(model)
        increments = torch.cat([(r.usage - self._synced[n]).flatten()
                                for n, r in routers.items()])
        all_reduce(increments, op='sum')
        averaged = [r.usage_ema for r in routers.values()] + [
            m.joint for m in (model.module if is_model_wrapper(model) else model).modules()
            if isinstance(m, MutualInformationLoss)]
        flat = torch.cat([t.flatten() for t in averaged])
        all_reduce(flat, op='mean')
        for tensor, value in zip(averaged, flat.split([t.numel() for t in averaged])):
            tensor.copy_(value.view_as(tensor))
        for (name, router), value in zip(routers.items(), increments.split(
                [r.usage.numel() for r in routers.values()])):
            router.usage.copy_(self._synced[name] + value.view_as(router.usage))
            self._synced[name] = router.usage.clone()


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

    In a distributed run the hook makes the counts those of all ranks (:class:`RankStatistics`:
    after every training iteration, so checkpoints save them, and at the end of each phase),
    and averages ``usage_ema`` and the MI loss's running P(t, e) across ranks.
    ``tools/analysis/expert_usage.py`` draws them; ``tools/extract.py --usage`` reads them.
    """
    priority = 'LOW'

    def __init__(self):
        self._mark: Optional[Dict[str, torch.Tensor]] = None  # counts at the phase start
        self._train: Optional[Dict[str, torch.Tensor]] = None  # training counts, while training
        self._ranks = RankStatistics()

    def _counts(self, runner) -> Dict[str, torch.Tensor]:
        return {name: router.usage.detach().cpu().clone()
                for name, router in router_usage(runner.model).items()}

    def _since_mark(self, runner) -> Dict[str, torch.Tensor]:
        """Counts (of all ranks) since the last mark; moves the mark to now."""
        self._ranks.sync(runner.model)
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
        self._ranks.start(runner.model)
        self._mark = self._counts(runner)
        self._train = {name: torch.zeros_like(c) for name, c in self._mark.items()}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._ranks.sync(runner.model)  # before CheckpointHook (priority VERY_LOW) saves

    def before_val_epoch(self, runner):
        self._ranks.start(runner.model)
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
        self._ranks.start(runner.model)
        self._mark = self._counts(runner)

    def after_test_epoch(self, runner, metrics=None):
        self._write(runner, 'test', self._since_mark(runner))
