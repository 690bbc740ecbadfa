"""One backbone, an optional neck and one head per task, trained on heterogeneous batches."""
from collections import defaultdict

import torch
from mmengine.model import BaseModel

from modzoo.registry import MODELS


@MODELS.register_module()
class MultiTaskModel(BaseModel):
    """Shared backbone (+ neck) with a head per task.

    Args:
        backbone (dict): backbone cfg; called as ``backbone(x, task)``. A backbone whose
            ``task_conditioned`` attribute is True (task-routed MoE) runs once per task of a
            batch; any other runs once per batch.
        heads (dict): ``task name -> head cfg``.
        neck (dict, optional): called as ``neck(features, tasks)`` with the tasks that share
            those backbone features; returns ``{task: Features}``.
        loss_weights (dict, optional): ``task name -> weight`` (default 1).
        data_preprocessor (dict, optional): e.g. ``ImgDataPreprocessor`` with mean/std.

    Batches come from :class:`MultiTaskDataset`; every sample lists the tasks it is
    labelled for (``data_sample.tasks``). Samples are grouped by that tuple, so a batch may
    hold several sources (validation) or one (training with :class:`TaskBalancedSampler`).
    Losses come back as ``loss_<task>`` (weighted), the backbone's auxiliary losses as they
    are named (``loss_moe_*``, summed over the tasks of the batch), and other values a head
    reports as ``<task>_<name>`` (logged, not optimised).
    """

    def __init__(self, backbone, heads, neck=None, loss_weights=None,
                 data_preprocessor=None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if not heads:
            raise ValueError('MultiTaskModel needs at least one head in `heads`.')
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck) if neck is not None else None
        self.heads = torch.nn.ModuleDict({task: MODELS.build(cfg) for task, cfg in heads.items()})
        loss_weights = dict(loss_weights or {})
        unknown = set(loss_weights) - set(heads)
        if unknown:
            raise KeyError(f'loss_weights names tasks without a head: {sorted(unknown)}; '
                           f'heads: {sorted(heads)}')
        self.loss_weights = {task: float(loss_weights.get(task, 1.0)) for task in heads}

    @property
    def tasks(self):
        return tuple(self.heads)

    def _task_features(self, inputs, tasks):
        """Features of each task, running the backbone as few times as it allows.

        Returns ``({task: Features}, aux_losses)``; auxiliary losses are summed over the
        backbone and neck runs, each run counted once.
        """
        unknown = [t for t in tasks if t not in self.heads]
        if unknown:
            raise KeyError(f'samples are labelled for task(s) {unknown} but the model has no '
                           f'head for them; heads: {list(self.heads)}')
        # a task-routed backbone runs once per task, any other once for all of them
        groups = [(t, ) for t in tasks] if self._routes_tasks else [tuple(tasks)]
        feats, aux = {}, defaultdict(float)
        for group in groups:
            shared = self.backbone(inputs, group[0] if self._routes_tasks else None)
            runs = [shared]
            if self.neck is None:
                feats.update((t, shared) for t in group)
            else:
                by_task = self.neck(shared, group)
                feats.update(by_task)
                runs.extend(by_task[t] for t in group)
            for run in runs:
                for name, value in (run.aux_losses or {}).items():
                    aux[name] = aux[name] + value
        return feats, dict(aux)

    @property
    def _routes_tasks(self):
        return getattr(self.backbone, 'task_conditioned', False)

    @staticmethod
    def _group_by_tasks(data_samples):
        groups = defaultdict(list)
        for i, sample in enumerate(data_samples):
            tasks = sample.metainfo.get('tasks')
            if not tasks:
                raise ValueError(f'sample {sample.metainfo.get("img_path", i)} has no `tasks`; '
                                 'wrap its dataset in MultiTaskDataset')
            groups[tuple(tasks)].append(i)
        return groups.items()

    def train_step(self, data, optim_wrapper):
        """mmengine's step; a :class:`MultiTaskOptimWrapper` (it needs the ``loss_<task>``
        values before they are summed) runs the whole step itself."""
        if hasattr(optim_wrapper, 'multi_task_step'):
            return optim_wrapper.multi_task_step(self, data)
        return super().train_step(data, optim_wrapper)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            tasks = self.tasks if data_samples is None else \
                tuple(dict.fromkeys(t for s in data_samples for t in s.tasks))
            return self._task_features(inputs, tasks)[0]
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    def loss(self, inputs, data_samples):
        losses = defaultdict(float)
        for tasks, idx in self._group_by_tasks(data_samples):
            x = inputs if len(idx) == len(data_samples) else inputs[idx]
            samples = [data_samples[i] for i in idx]
            feats, aux = self._task_features(x, tasks)
            for task, task_feats in feats.items():
                for name, value in self.head_loss(task, task_feats, samples).items():
                    if name == 'loss':
                        losses[f'loss_{task}'] = losses[f'loss_{task}'] + \
                            self.loss_weights[task] * value
                    else:
                        losses[f'{task}_{name}'] = value
            for name, value in aux.items():
                losses[name] = losses[name] + value
        return dict(losses)

    def predict(self, inputs, data_samples):
        for tasks, idx in self._group_by_tasks(data_samples):
            x = inputs if len(idx) == len(data_samples) else inputs[idx]
            samples = [data_samples[i] for i in idx]
            feats, _ = self._task_features(x, tasks)
            for task, task_feats in feats.items():
                self.head_predict(task, task_feats, samples)
        return data_samples

    def head_loss(self, task, feats, data_samples) -> dict:
        """The losses of ``task``'s head (a model whose heads need more than the features
        overrides this and :meth:`head_predict`)."""
        return self.heads[task].loss(feats, data_samples)

    def head_predict(self, task, feats, data_samples):
        return self.heads[task].predict(feats, data_samples)
