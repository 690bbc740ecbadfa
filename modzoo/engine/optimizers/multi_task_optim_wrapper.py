"""An optim wrapper that combines the per-task losses (or gradients) of a step."""
import contextlib

import torch
import torch.distributed as dist
from mmengine.optim import OptimWrapper
from torch.distributed.fsdp import FSDPModule

from modzoo.engine.weightings import EW
from modzoo.registry import OPTIM_WRAPPERS, WEIGHTINGS
from .bf16_optim_wrapper import BF16OptimWrapper

ALL_SOURCES_HINT = ("use train_dataloader.batch_sampler=dict(type='TaskBalancedSampler', "
                    "mode='all_sources'), which puts one batch of every source in each step")
FSDP_REASON = ('combines the per-task gradients of the shared parameters, but FSDP '
               '(--strategy fsdp, FullyShardedModel) reduce-scatters every backward pass, so '
               'no rank holds a whole per-task gradient; train it with DDP (--strategy ddp), '
               'or use a loss weighting or MGDAUB (one backward pass per step)')


@OPTIM_WRAPPERS.register_module()
class MultiTaskOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose update combines the task losses with a :class:`Weighting`.

    ``optim_wrapper = dict(type='MultiTaskOptimWrapper', weighting=dict(type='PCGrad'),
    optimizer=..., clip_grad=...)``. The model's ``train_step`` (``MultiTaskModel`` and the
    modzoo DDP wrapper) hands over the whole step, :meth:`multi_task_step`, because the
    weighting needs the ``loss_<task>`` values before they are summed:

    - EW: mmengine's step (sum of all losses, one backward): no extra cost;
    - a loss weighting: one backward of ``sum_t w_t L_t + aux`` (``loss_moe_*`` and other
      non-task losses are added unweighted);
    - a gradient method: one backward per task (and one for the auxiliary losses, if any)
      collects the ``[T, P]`` gradients of the shared parameters (all but ``model.heads``),
      the weighting combines them to ``[P]``; the heads keep their own task's gradient
      (scaled where the weighting scales the losses, IMTL);
    - a weighting on the representation (MGDA-UB): the ``[T, T]`` Gram matrix of the task
      gradients with respect to the backbone's output (T backward passes that stop there)
      gives the weights of one backward of ``sum_t w_t L_t + aux``.

    Distributed: the weights are computed from the losses averaged across ranks; for a
    gradient method the per-task backward passes run under ``no_sync`` and the ``[T, P]``
    gradients (and the heads' gradients) are averaged across ranks before the weighting
    sees them, so every rank applies the update a single process would at the same global
    batch. Under FSDP (``FullyShardedModel``) the loss weightings and MGDA-UB run as they
    are; a gradient method raises (no rank holds a whole per-task gradient).

    Args:
        optimizer: as ``OptimWrapper``.
        weighting (dict): a ``WEIGHTINGS`` cfg; ``num_tasks`` is filled in from the model.
        tasks (list[str], optional): the tasks, in the weighting's order (default: the
            model's ``tasks``).
        accumulative_counts, clip_grad: as ``OptimWrapper`` (clipping applies to the combined
            gradient; gradient methods need ``accumulative_counts=1``).

    Composes with other wrappers through ``optim_context``/``step``/``zero_grad`` (an AMP
    wrapper's autocast context applies to every forward pass here).
    """

    def __init__(self, optimizer, weighting=None, tasks=None, **kwargs):
        super().__init__(optimizer=optimizer, **kwargs)
        self.weighting_cfg = dict(weighting or dict(type='EW'))
        weighting_cls = WEIGHTINGS.get(self.weighting_cfg.get('type'))
        if weighting_cls is None:
            WEIGHTINGS.build(self.weighting_cfg)  # raises, naming the closest names
        if weighting_cls.needs_grads and self._accumulative_counts != 1:
            raise ValueError(f"weighting '{self.weighting_cfg['type']}' combines per-task "
                             'gradients of each step: it needs accumulative_counts=1, got '
                             f'{self._accumulative_counts}')
        self.tasks = tuple(tasks) if tasks is not None else None
        self.weighting = None
        self._pending_state = None

    # -- building --------------------------------------------------------------------------
    def _build_weighting(self, module):
        if self.weighting is not None:
            return
        if self.tasks is None:
            if not hasattr(module, 'tasks'):
                raise ValueError('MultiTaskOptimWrapper needs the task names: the model has no '
                                 '`tasks`, so set optim_wrapper.tasks=[...]')
            self.tasks = tuple(module.tasks)
        self.weighting = WEIGHTINGS.build(self.weighting_cfg,
                                          default_args=dict(num_tasks=len(self.tasks)))
        if self._pending_state is not None:
            self.weighting.load_state_dict(self._pending_state)
            self._pending_state = None

    def state_dict(self):
        state = super().state_dict()
        if self.weighting is not None:
            state['weighting'] = self.weighting.state_dict()
        elif self._pending_state is not None:
            state['weighting'] = self._pending_state
        return state

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        weighting_state = state_dict.pop('weighting', None)
        super().load_state_dict(state_dict)
        if weighting_state is not None:
            if self.weighting is None:
                self._pending_state = weighting_state
            else:
                self.weighting.load_state_dict(weighting_state)

    # -- one step --------------------------------------------------------------------------
    def multi_task_step(self, model, data):
        """Forward, combine and update; ``model`` is the model or its DDP wrapper.

        Returns the log variables (the losses and the weights used).
        """
        module = getattr(model, 'module', model)
        self._build_weighting(module)
        gradient_method = self.weighting.needs_grads
        if gradient_method and isinstance(module, FSDPModule):
            raise RuntimeError(f"weighting '{type(self.weighting).__name__}' {FSDP_REASON}")
        sync_off = model.no_sync() if gradient_method and hasattr(model, 'no_sync') \
            else contextlib.nullcontext()
        capture = _BackboneOutputs(module) if self.weighting.needs_representation_grads \
            else contextlib.nullcontext()
        with sync_off, self.optim_context(model), capture:
            data = module.data_preprocessor(data, True)
            losses = model._run_forward(data, mode='loss')
        summed, log_vars = module.parse_losses(losses)
        task_losses, aux = self._split(losses)
        if isinstance(self.weighting, EW):
            self.update_params(summed)
            return log_vars
        global_losses = self._global_losses(task_losses, summed.device)
        missing = [t for t in self.tasks if t not in task_losses]
        if missing and self.weighting.needs_all_tasks:
            raise RuntimeError(
                f"weighting '{type(self.weighting).__name__}' needs every task's loss in each "
                f'step, but this step has no loss of task(s) {missing} (present: '
                f'{sorted(task_losses)}); {ALL_SOURCES_HINT}')
        if gradient_method:
            self._gradient_step(model, module, data, task_losses, aux, global_losses)
        elif self.weighting.needs_representation_grads:
            weights = self.weighting.weights(
                global_losses, _representation_gram(capture.tensors, task_losses, self.tasks))
            self._weighted_step(weights, task_losses, aux, log_vars)
        else:
            self._weighted_step(self.weighting.weights(global_losses), task_losses, aux, log_vars)
        if self.weighting.needs_losses_after_step:
            with torch.no_grad(), self.optim_context(model):
                after, _ = self._split(model._run_forward(data, mode='loss'))
            self.weighting.after_step(self._global_losses(after, summed.device))
        return log_vars

    def _weighted_step(self, weights, task_losses, aux, log_vars):
        """One backward of ``sum_t w_t L_t + aux`` and the update; logs the weights."""
        total = sum(weights[i] * task_losses[t] for i, t in enumerate(self.tasks)
                    if t in task_losses)
        self.update_params(total + aux)
        log_vars.update({f'weight_{t}': float(weights[i])
                         for i, t in enumerate(self.tasks) if t in task_losses})

    def _global_losses(self, task_losses, device):
        """[T] detached losses averaged over the ranks, NaN for tasks without a loss."""
        nan = torch.tensor(float('nan'), device=device)
        return _all_reduce_mean(torch.stack([
            task_losses[t].detach().float() if t in task_losses else nan for t in self.tasks]))

    def _split(self, losses):
        """``{task: loss}`` of ``loss_<task>`` and the sum of the other losses (auxiliary)."""
        task_keys = {f'loss_{t}': t for t in self.tasks}
        task_losses, aux = {}, 0.0
        for name, value in losses.items():
            if 'loss' not in name:
                continue
            value = value if isinstance(value, torch.Tensor) else sum(v.mean() for v in value)
            if name in task_keys:  # fp32 also under bf16 autocast
                task_losses[task_keys[name]] = value.float().mean()
            else:
                aux = aux + value.float().mean()
        return task_losses, aux

    def _gradient_step(self, model, module, data, task_losses, aux, global_losses):
        shared, private = _split_parameters(module)
        for p in shared + private:
            p.grad = None
        scales = self.weighting.loss_scales(global_losses)
        losses = [task_losses[t] * (1 if scales is None else scales[i])
                  for i, t in enumerate(self.tasks)]
        has_aux = isinstance(aux, torch.Tensor) and aux.requires_grad
        rows, used = [], torch.zeros(len(shared), dtype=torch.bool)
        if has_aux:
            aux.backward(retain_graph=True)
            rows.append(_take_grads(shared, used))
        for i, loss in enumerate(losses):
            loss.backward(retain_graph=i < len(losses) - 1)
            rows.append(_take_grads(shared, used))
        grads = _all_reduce_mean(torch.stack(rows))
        used = _all_reduce_mean(used.float()) > 0
        _all_reduce_grads(private)
        aux_grad = grads[0] if has_aux else None
        grads = grads[1:] if has_aux else grads
        if getattr(self.weighting, 'perturbs', False):
            sam_grads = self._sharpness_grads(model, module, data, shared, grads)
            combined = self.weighting.combine_flat(grads, sam_grads, global_losses)
        else:
            combined = self.weighting.combine(grads, global_losses)
        if aux_grad is not None:
            combined = combined + aux_grad
        _put_grads(shared, combined, used)
        self.step()
        self.zero_grad()
        self._inner_count += 1

    @torch.no_grad()
    def _sharpness_grads(self, model, module, data, shared, grads):
        """F-MTL: each task's gradient at its perturbed point ([T, P]); the heads' gradients
        are replaced by theirs at the perturbed points. Each perturbed forward runs on the
        samples labelled for its task only (all of them when one source labels every task)."""
        rho = self.weighting.rho
        origin = [p.detach().clone() for p in shared]
        sam_rows, head_grads = [], {}
        for i, task in enumerate(self.tasks):
            head = [p for p in module.heads[task].parameters() if p.requires_grad]
            head_origin = [p.detach().clone() for p in head]
            _shift(shared, grads[i], rho)
            head_vec = _flat([p.grad for p in head], head)
            _shift(head, head_vec, rho)
            for p in shared + head:
                p.grad = None
            sync_off = model.no_sync() if hasattr(model, 'no_sync') else contextlib.nullcontext()
            with torch.enable_grad(), sync_off, self.optim_context(model):
                losses = model._run_forward(_samples_of_task(data, task), mode='loss')
                loss = self._split(losses)[0][task]
                loss.backward()
            sam_rows.append(_take_grads(shared, torch.zeros(len(shared), dtype=torch.bool)))
            head_grads[task] = [p.grad for p in head]
            for p, value in zip(shared, origin):
                p.copy_(value)
            for p, value in zip(head, head_origin):
                p.copy_(value)
        for task, values in head_grads.items():
            for p, g in zip([p for p in module.heads[task].parameters() if p.requires_grad],
                            values):
                p.grad = g
        _all_reduce_grads([p for t in self.tasks for p in module.heads[t].parameters()
                           if p.requires_grad])
        return _all_reduce_mean(torch.stack(sam_rows))


def _samples_of_task(data, task):
    """The preprocessed batch ``data`` reduced to the samples labelled for ``task`` (a sample
    without ``tasks`` counts as labelled for every task)."""
    samples = data.get('data_samples') if isinstance(data, dict) else None
    if not samples:
        return data
    idx = [i for i, s in enumerate(samples) if task in s.metainfo.get('tasks', (task, ))]
    if len(idx) == len(samples):
        return data
    inputs = data['inputs']
    inputs = inputs[idx] if isinstance(inputs, torch.Tensor) else [inputs[i] for i in idx]
    return dict(data, inputs=inputs, data_samples=[samples[i] for i in idx])


class _BackboneOutputs:
    """Context that keeps the tensors the model's backbone returns while it is active (the
    shared representation of :class:`MGDAUB`), from every backbone run of the forward."""

    def __init__(self, module):
        backbone = getattr(module, 'backbone', None)
        if not isinstance(backbone, torch.nn.Module):
            raise ValueError(f'a weighting on the shared representation takes the output of '
                             f"the model's `backbone`; {type(module).__name__} has none")
        self.backbone, self.tensors = backbone, []

    def _keep(self, backbone, args, output):
        for value in (output if isinstance(output, (tuple, list)) else (output, )):
            if isinstance(value, (tuple, list)):
                self._keep(backbone, args, value)
            elif isinstance(value, torch.Tensor) and value.requires_grad \
                    and all(value is not t for t in self.tensors):
                self.tensors.append(value)

    def __enter__(self):
        self.handle = self.backbone.register_forward_hook(self._keep)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def _representation_gram(representation, task_losses, tasks):
    """[T, T] float64 Gram matrix of ``dL_t / dZ`` over the global batch (Z: the tensors of
    ``representation``); each rank's gradients are of its own samples' rows of Z, so the
    global matrix is the sum of the ranks' matrices of ``dL_t / dZ`` scaled to the global
    mean loss (1 / world size each)."""
    if not representation:
        raise RuntimeError('a weighting on the shared representation found no backbone output '
                           'that requires grad (is the backbone frozen?)')
    rows = []
    for task in tasks:
        grads = torch.autograd.grad(task_losses[task], representation, retain_graph=True,
                                    allow_unused=True)
        rows.append(_flat(grads, representation).double())
    g = torch.stack(rows)
    gram = g @ g.T
    if _distributed():
        world = dist.get_world_size()
        gram = _all_reduce_mean(gram) / world
    return gram


@OPTIM_WRAPPERS.register_module()
class BF16MultiTaskOptimWrapper(MultiTaskOptimWrapper, BF16OptimWrapper):
    """:class:`MultiTaskOptimWrapper` whose forward passes run under bf16 autocast
    (:class:`BF16OptimWrapper`; what ``tools/train.py --amp`` picks for it).

    Parameters, gradients and optimizer state stay fp32; the task losses are cast to fp32
    before they are weighted, the per-task gradients are the fp32 parameters' and every
    combination runs in fp32 (float64 for the small solvers). No loss scaling is needed, so
    the per-task backward passes of the gradient methods compose as they are.
    """


def _split_parameters(module):
    """Trainable parameters: (shared, task-specific); task-specific are ``module.heads``."""
    heads = getattr(module, 'heads', None)
    private_ids = {id(p) for p in heads.parameters()} if heads is not None else set()
    params = [p for p in module.parameters() if p.requires_grad]
    return ([p for p in params if id(p) not in private_ids],
            [p for p in params if id(p) in private_ids])


def _flat(grads, params):
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, params)])


def _take_grads(params, used):
    """The params' gradients as one [P] vector (zeros where None); clears them and marks in
    ``used`` (a [len(params)] bool tensor) the params that had one."""
    used |= torch.tensor([p.grad is not None for p in params], dtype=torch.bool)
    vec = _flat([p.grad for p in params], params)
    for p in params:
        p.grad = None
    return vec


def _put_grads(params, vec, used):
    """Set the gradients of the ``used`` params from the [P] vector; the others stay None,
    so the optimizer skips them as it would after a plain backward."""
    offset = 0
    for p, is_used in zip(params, used.tolist()):
        n = p.numel()
        if is_used:
            p.grad = vec[offset:offset + n].view_as(p).to(p.dtype).clone()
        offset += n


def _shift(params, direction, rho):
    """params += rho * direction / ||direction|| (direction: [P] over params)."""
    norm = direction.norm()
    if norm == 0:
        return
    _add(params, direction * (rho / norm))


def _add(params, vec):
    offset = 0
    for p in params:
        n = p.numel()
        p.add_(vec[offset:offset + n].view_as(p))
        offset += n


def _distributed():
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_mean(tensor):
    """The mean of ``tensor`` over the ranks (itself when not distributed); NaN stays NaN."""
    if not _distributed():
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor)
    return tensor / dist.get_world_size()


def _all_reduce_grads(params):
    """Average the gradients of ``params`` over the ranks (a param without a gradient on
    every rank keeps None)."""
    if not _distributed() or not params:
        return
    used = torch.tensor([p.grad is not None for p in params], dtype=torch.float32)
    vec = _all_reduce_mean(torch.cat([_flat([p.grad for p in params], params), used]))
    _put_grads(params, vec[:-len(params)], vec[-len(params):] > 0)


def _configured_weighting(cfg):
    """(weighting cfg, its class) of a config whose optim wrapper is a multi-task one,
    else (None, None); an unknown weighting type raises, naming the closest names."""
    optim = cfg.get('optim_wrapper') or {}
    if str(optim.get('type', '')).split('.')[-1] not in ('MultiTaskOptimWrapper',
                                                         'BF16MultiTaskOptimWrapper'):
        return None, None
    weighting = dict(optim.get('weighting') or dict(type='EW'))
    weighting_cls = WEIGHTINGS.get(weighting.get('type'))
    if weighting_cls is None:
        WEIGHTINGS.build(weighting)
    return weighting, weighting_cls


def check_weighting_sampler(cfg):
    """Build-time check: a weighting that needs every task's loss in each step (gradient
    methods, GLS) with a ``TaskBalancedSampler`` that yields one source per step, where a
    source does not label every task, raises ``ValueError`` naming the sampler mode to use."""
    weighting, weighting_cls = _configured_weighting(cfg)
    if weighting_cls is None or not weighting_cls.needs_all_tasks:
        return
    loader = cfg.get('train_dataloader') or {}
    sampler = loader.get('batch_sampler') or {}
    dataset = loader.get('dataset') or {}
    if sampler.get('type') != 'TaskBalancedSampler' or sampler.get('mode') == 'all_sources':
        return
    sources = {name: list(src.get('tasks', ())) for name, src in
               (dataset.get('sources') or {}).items()}
    all_tasks = {t for tasks in sources.values() for t in tasks}
    partial = {name: tasks for name, tasks in sources.items() if set(tasks) != all_tasks}
    if partial:
        raise ValueError(
            f"optim_wrapper.weighting '{weighting['type']}' needs every task's loss in each "
            f"step, but train_dataloader.batch_sampler TaskBalancedSampler(mode="
            f"'{sampler.get('mode', 'one_source')}') yields one source per step and sources "
            f'{partial} do not label all tasks {sorted(all_tasks)}; {ALL_SOURCES_HINT}')


def check_weighting_strategy(cfg):
    """Build-time check: a gradient method (per-task parameter gradients) with FSDP
    (``model_wrapper_cfg`` ``FullyShardedModel``, ``--strategy fsdp``) raises ``ValueError``
    saying why and what runs instead."""
    weighting, weighting_cls = _configured_weighting(cfg)
    wrapper = cfg.get('model_wrapper_cfg') or {}
    if weighting_cls is not None and weighting_cls.needs_grads \
            and str(wrapper.get('type', '')).split('.')[-1] == 'FullyShardedModel':
        raise ValueError(f"optim_wrapper.weighting '{weighting['type']}' {FSDP_REASON}")
