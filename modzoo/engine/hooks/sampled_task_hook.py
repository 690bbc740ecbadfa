"""Tells a task-aware optimizer (TBGN) which task each training batch was sampled for."""
from mmengine.hooks import Hook

from modzoo.registry import HOOKS


def _optimizers(runner):
    """The optimizers of the runner that take a sampled task (``set_task``)."""
    wrapper = runner.optim_wrapper
    wrappers = wrapper.values() if hasattr(wrapper, 'values') else [wrapper]
    return [w.optimizer for w in wrappers if hasattr(w.optimizer, 'set_task')]


@HOOKS.register_module()
class SampledTaskHook(Hook):
    """Sets ``optimizer.set_task(source)`` before every training step.

    With unmixed sampling (:class:`TaskBalancedSampler`) every batch comes from one source of
    the :class:`MultiTaskDataset`; that source is the sampled task k of
    :class:`TBGNAdamW`. Before training, an optimizer without ``sampling_ratios`` gets the
    batch sampler's source weights. A batch that mixes sources raises: task-balanced
    normalisation needs one task per step.
    """
    priority = 'NORMAL'

    def before_train(self, runner):
        optimizers = _optimizers(runner)
        if not optimizers:
            raise RuntimeError('SampledTaskHook: no optimizer of this run takes a sampled task '
                               '(e.g. TBGNAdamW); remove the hook or change the optimizer')
        loader = runner.train_dataloader
        for optimizer in optimizers:
            if optimizer.sampling_ratios is not None:
                continue
            weights = getattr(loader.batch_sampler, 'weights', None)
            names = getattr(loader.dataset, 'source_names', None)
            if weights is None or names is None:
                raise RuntimeError(
                    'SampledTaskHook: the optimizer has no sampling_ratios and the training '
                    'loader is not a MultiTaskDataset with a TaskBalancedSampler to read them '
                    'from; pass sampling_ratios={source: ratio} to the optimizer')
            optimizer.set_sampling_ratios(dict(zip(names, (float(w) for w in weights))))

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        samples = data_batch['data_samples']
        sources = {s.metainfo.get('source') for s in samples}
        if len(sources) != 1 or None in sources:
            raise ValueError(f'SampledTaskHook: a training batch holds the sources {sources}; '
                             'task-balanced normalisation needs batches of one source '
                             "(batch_sampler=dict(type='TaskBalancedSampler'))")
        source = sources.pop()
        for optimizer in _optimizers(runner):
            optimizer.set_task(source)
