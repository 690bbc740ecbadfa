"""Class-incremental training: the classes arrive in tasks, learnt one task after the other.

For each task t (``class_split`` in alphabetical class order, see
:func:`~modzoo.datasets.class_incremental.split_classes`) the loop

1. opens the task: ``model.next_task()`` when the model has one (MULTI-LANE's pathway t then
   starts from pathway t-1), a fresh optimizer and fresh parameter schedulers (their
   ``begin``/``end`` count epochs or iterations within the task), and the task's data: the
   training images with at least one label of the task's classes
   (:class:`~modzoo.datasets.class_incremental.ClassSubset`, which zeroes the targets of
   the other classes);
2. trains ``epochs_per_task`` epochs with the logits of the other tasks' classes masked
   (a forward hook on ``logits_module``: 0 for multi-label BCE, as MULTI-LANE, or -inf for
   single-label cross-entropy), so those classes get no gradient;
3. evaluates on the validation images holding a class of tasks 0..t, with the unseen
   classes masked, and records the metrics and their summary
   (:func:`~modzoo.evaluation.metrics.incremental.incremental_summary`) in the message hub
   and in ``<work_dir>/incremental_results.json``.

Checkpoints: a checkpoint hook with ``by_epoch=True`` saves after every epoch, so during and
between tasks; the split and the per-task results travel in the message hub, and
``--resume`` continues in the task (and after the epoch) the run stopped in. A task's
evaluation runs before its last epoch's checkpoint is written. :class:`IncrementalTestLoop`
(``test_cfg``) tests a checkpoint as step 3 evaluates it: on the classes seen up to the task
the model had reached.
"""
import copy
import json
import os.path as osp

import torch
from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner.base_loop import BaseLoop
from mmengine.runner.loops import TestLoop

from modzoo.datasets.class_incremental import (ClassSubset, dataset_classes, split_classes,
                                               split_name)
from modzoo.engine.checkpoint import write_atomic
from modzoo.engine.freeze import parameter_counts
from modzoo.evaluation.metrics.incremental import incremental_summary
from modzoo.registry import LOOPS

STATE_KEY = 'incremental'
RESULTS_FILE = 'incremental_results.json'


def params_per_task(model) -> int:
    """Trainable parameters one task adds: ``model.params_per_task()`` when the model
    defines it (MULTI-LANE), else every parameter that requires a gradient."""
    if hasattr(model, 'params_per_task'):
        return int(model.params_per_task())
    return parameter_counts(model)[0]


def mask_to_lists(class_mask) -> list:
    """[T, C] 0/1 tensor (``PathwayHead.class_mask``) -> class indices of each task."""
    return [torch.nonzero(row).flatten().tolist() for row in class_mask]


@LOOPS.register_module()
class IncrementalLoop(BaseLoop):
    """Train task by task on a class-incremental split (see the module docstring).

    Args:
        runner: the Runner; its ``optim_wrapper`` and ``param_scheduler`` must be configs
            (they are built again for every task).
        dataloader: the train dataloader config over all classes; its dataset's
            ``metainfo['classes']`` names the classes.
        class_split: ``dict(base=B, increment=C)``, e.g. ``dict(base=0, increment=10)`` for
            COCO B0-C10.
        epochs_per_task: epochs of each task.
        logits_module: name of the submodule whose output is the class logits
            [..., C] (e.g. ``'head.fc'``); its outputs of inactive classes are masked.
        multi_label: True: masked logits are 0 (BCE; MULTI-LANE's ``mask_logits``);
            False: -inf (softmax cross-entropy, single-label CIL).

    Parameters to freeze (e.g. a linear probe's backbone) are named in the optim wrapper
    config (``FreezeOptimWrapperConstructor``), built again for every task.
    """

    def __init__(self, runner, dataloader, class_split, epochs_per_task, logits_module,
                 multi_label=True):
        if not isinstance(dataloader, dict):
            raise TypeError('IncrementalLoop: train_dataloader must be a config dict (the '
                            f'loop builds one per task), got {type(dataloader).__name__}')
        for name in ('optim_wrapper', 'param_schedulers'):
            if not isinstance(getattr(runner, name), (dict, list, type(None))):
                raise TypeError(f'IncrementalLoop: the runner\'s {name} must be a config '
                                '(the loop builds it again for every task)')
        if not isinstance(class_split, dict) or set(class_split) != {'base', 'increment'}:
            raise ValueError('IncrementalLoop: class_split must be dict(base=..., '
                             f'increment=...), got {class_split!r}')
        if not isinstance(epochs_per_task, int) or epochs_per_task < 1:
            raise ValueError(f'IncrementalLoop: epochs_per_task={epochs_per_task!r}, expected '
                             'a positive int')
        super().__init__(runner, dataloader)
        self._loader_cfg = copy.deepcopy(dataloader)
        self._optim_cfg = copy.deepcopy(runner.optim_wrapper)
        self._scheduler_cfg = copy.deepcopy(runner.param_schedulers)
        self.split = split_name(**class_split)
        self.classes = dataset_classes(self.dataloader.dataset)
        self.class_mask = split_classes(self.classes, **class_split)
        self.num_tasks = len(self.class_mask)
        self.epochs_per_task = epochs_per_task
        self.logits_module = logits_module
        self.fill_value = 0. if multi_label else float('-inf')

        self._check_model_split(self.model)
        self.train_sets = [
            ClassSubset(self.dataloader.dataset, classes, self._task_name(t))
            for t, classes in enumerate(self.class_mask)]
        self._max_epochs = self.num_tasks * epochs_per_task
        self._max_iters = epochs_per_task * sum(len(self._loader(s)) for s in self.train_sets)
        self._epoch = 0
        self._iter = 0
        self._active = None            # bool [C]: the classes whose logits are not masked
        self._loaded_task = None       # the task whose data self.dataloader holds
        self.history = []              # metrics measured after each task
        runner.message_hub.update_info(STATE_KEY, self._state())

    # -- mmengine loop interface ---------------------------------------------------------
    @property
    def max_epochs(self):
        return self._max_epochs

    @property
    def max_iters(self):
        return self._max_iters

    @property
    def epoch(self):
        return self._epoch

    @property
    def iter(self):
        return self._iter

    @property
    def model(self):
        model = self.runner.model
        return model.module if is_model_wrapper(model) else model

    def run(self):
        """Train every task not yet done (all of them unless resumed)."""
        self._restore_state()
        hook = self.model.get_submodule(self.logits_module).register_forward_hook(
            self._mask_logits)
        try:
            self.runner.call_hook('before_train')
            while self._epoch < self._max_epochs:
                task, epoch_in_task = divmod(self._epoch, self.epochs_per_task)
                if task != self._loaded_task:
                    self._enter_task(task, fresh=epoch_in_task == 0)
                self.run_epoch(task, last=epoch_in_task == self.epochs_per_task - 1)
            self.runner.call_hook('after_train')
        finally:
            hook.remove()
        return self.runner.model

    def run_epoch(self, task, last):
        """One epoch of ``task``; after the task's last epoch, evaluate before the epoch's
        hooks (and so its checkpoint) run."""
        self._set_active(self.class_mask[task])
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        for idx, data_batch in enumerate(self.dataloader):
            self.runner.call_hook('before_train_iter', batch_idx=idx, data_batch=data_batch)
            outputs = self.runner.model.train_step(data_batch,
                                                   optim_wrapper=self.runner.optim_wrapper)
            self.runner.call_hook('after_train_iter', batch_idx=idx, data_batch=data_batch,
                                  outputs=outputs)
            self._iter += 1
        if last:
            self.evaluate(task)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1

    def evaluate(self, task):
        """Evaluate on the validation images with a class of tasks 0..task; unseen classes
        are masked in the logits and left out of the metrics."""
        val_loop = self.runner.val_loop
        if val_loop is None:
            print_log('IncrementalLoop: no val_dataloader/val_evaluator, tasks are not '
                      'evaluated', logger='current')
            return
        seen = [c for classes in self.class_mask[:task + 1] for c in classes]
        for metric in val_loop.evaluator.metrics:
            if hasattr(metric, 'set_tasks'):
                metric.set_tasks(self.class_mask, task)
        full = val_loop.dataloader
        val_cfg = self.runner.cfg.get('val_dataloader')
        if not isinstance(val_cfg, dict):
            raise TypeError('IncrementalLoop: cfg.val_dataloader must be a config dict (the '
                            'loop builds one per task); build the Runner with from_cfg')
        val_loop.dataloader = self.runner.build_dataloader(dict(
            val_cfg, dataset=ClassSubset(full.dataset, seen, f'validation of tasks 0..{task}')))
        self._set_active(seen)
        try:
            metrics = val_loop.run()
        finally:
            val_loop.dataloader = full
        self.history.append({key: float(value) for key, value in metrics.items()})
        summary = incremental_summary(self.history)
        self.runner.message_hub.update_info(STATE_KEY, self._state())
        print_log(f'IncrementalLoop: after task {task + 1}/{self.num_tasks} ({self.split}): ' +
                  ', '.join(f'{k}: {v:.2f}' for k, v in summary.items()
                            if not k.startswith('last/')), logger='current')
        if is_main_process():
            write_atomic(osp.join(self.runner.work_dir, RESULTS_FILE),
                         json.dumps(self.results(), indent=1).encode())

    def results(self) -> dict:
        """What ``incremental_results.json`` holds: the split, the metrics after each task
        and the summary of all of them."""
        return dict(split=self.split, classes=list(self.classes), class_mask=self.class_mask,
                    tasks=[dict(task=t, classes=[self.classes[c] for c in self.class_mask[t]],
                                metrics=metrics) for t, metrics in enumerate(self.history)],
                    summary=incremental_summary(self.history))

    # -- tasks ---------------------------------------------------------------------------
    def _task_name(self, task):
        return f'task {task + 1}/{self.num_tasks} of {self.split}'

    def _loader(self, dataset):
        return self.runner.build_dataloader(
            dict(self._loader_cfg, dataset=dataset), seed=self.runner.seed,
            diff_rank_seed=self.runner._randomness_cfg.get('diff_rank_seed', False))

    def _enter_task(self, task, fresh):
        """Point the loop at ``task``'s data; when the task starts (rather than resumes),
        open its pathway and build a fresh optimizer and schedulers."""
        model = self.model
        if fresh and task > 0 and hasattr(model, 'next_task'):
            model.next_task()
        if hasattr(model, 'task_id') and model.task_id != task:
            raise RuntimeError(f'IncrementalLoop: the model is at task {model.task_id} but the '
                               f'loop at task {task} (epoch {self._epoch}); was the checkpoint '
                               'written by this loop?')
        self.dataloader = self._loader(self.train_sets[task])
        self._loaded_task = task
        if not fresh:
            return
        runner = self.runner
        runner.optim_wrapper = runner.build_optim_wrapper(copy.deepcopy(self._optim_cfg))
        runner.scale_lr(runner.optim_wrapper, runner.auto_scale_lr)
        if self._scheduler_cfg is not None:
            runner.param_schedulers = runner.build_param_scheduler(
                copy.deepcopy(self._scheduler_cfg))
        runner.optim_wrapper.initialize_count_status(runner.model, self._iter, self._max_iters)
        names = [self.classes[c] for c in self.class_mask[task]]
        print_log(f'IncrementalLoop: {self._task_name(task)}: classes {names}, '
                  f'{len(self.train_sets[task])} training images; trainable parameters per '
                  f'task: {params_per_task(model):,} (all trainable: '
                  f'{parameter_counts(model)[0]:,})', logger='current')

    def _set_active(self, classes):
        self._active = torch.zeros(len(self.classes), dtype=torch.bool)
        self._active[classes] = True

    def _mask_logits(self, module, args, output):
        """Forward hook: logits [..., C] with the inactive classes set to the fill value."""
        return output.masked_fill(~self._active.to(output.device), self.fill_value)

    # -- state in the message hub (saved with every checkpoint) --------------------------
    def _state(self):
        return dict(split=self.split, class_mask=self.class_mask, history=self.history)

    def _restore_state(self):
        state = self.runner.message_hub.get_info(STATE_KEY)
        if state is None:
            raise ValueError('IncrementalLoop: the resumed checkpoint has no class-incremental '
                             f"state ('{STATE_KEY}' in its message hub); it was not written by "
                             'an IncrementalLoop')
        if state['class_mask'] != self.class_mask:
            raise ValueError(
                f"IncrementalLoop: the resumed checkpoint was trained on split {state['split']} "
                f"with tasks {state['class_mask']}, but this config gives {self.split} with "
                f'tasks {self.class_mask}; resume with the config that wrote the checkpoint')
        self.history = list(state['history'])

    def _check_model_split(self, model):
        head_mask = getattr(getattr(model, 'head', None), 'class_mask', None)
        if head_mask is not None and mask_to_lists(head_mask) != \
                [sorted(classes) for classes in self.class_mask]:
            raise ValueError(f'IncrementalLoop: model.head.class_mask has tasks '
                             f'{mask_to_lists(head_mask)} but split {self.split} of the '
                             f'classes {list(self.classes)} gives {self.class_mask}; build the '
                             'head with split_classes(classes, **class_split)')


@LOOPS.register_module()
class IncrementalTestLoop(TestLoop):
    """Tests a checkpoint of :class:`IncrementalLoop` on the classes seen up to the task t
    the model had reached (``model.task_id``, MULTI-LANE's open pathway), as the training
    loop evaluates after task t: the test images holding a class of tasks 0..t, the other
    classes' logits masked, the metrics told the split (``set_tasks``). A model without
    ``task_id`` is tested on every task's classes. The split, ``logits_module`` and
    ``multi_label`` come from the config's ``train_cfg`` (an ``IncrementalLoop``).
    """

    def run(self) -> dict:
        train_cfg = self.runner.cfg.get('train_cfg') or {}
        if train_cfg.get('type') != 'IncrementalLoop':
            raise ValueError('IncrementalTestLoop: the config\'s train_cfg must be an '
                             f'IncrementalLoop (it gives the class split), got {train_cfg!r}')
        model = self.runner.model.module if is_model_wrapper(self.runner.model) \
            else self.runner.model
        full = self.dataloader
        classes = dataset_classes(full.dataset)
        class_mask = split_classes(classes, **train_cfg['class_split'])
        task = int(getattr(model, 'task_id', len(class_mask) - 1))
        seen = [c for classes in class_mask[:task + 1] for c in classes]
        for metric in self.evaluator.metrics:
            if hasattr(metric, 'set_tasks'):
                metric.set_tasks(class_mask, task)
        active = torch.zeros(len(classes), dtype=torch.bool)
        active[seen] = True
        fill = 0. if train_cfg.get('multi_label', True) else float('-inf')
        hook = model.get_submodule(train_cfg['logits_module']).register_forward_hook(
            lambda module, args, output: output.masked_fill(~active.to(output.device), fill))
        self.dataloader = self.runner.build_dataloader(dict(
            self.runner.cfg.test_dataloader,
            dataset=ClassSubset(full.dataset, seen, f'test of tasks 0..{task}')))
        print_log(f'IncrementalTestLoop: the model is at task {task + 1}/{len(class_mask)}: '
                  f'testing on the classes of tasks 1..{task + 1}', logger='current')
        try:
            return super().run()
        finally:
            hook.remove()
            self.dataloader = full
