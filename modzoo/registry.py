"""Every modzoo registry, each a child of mmengine's root registry of the same kind.

All registries share the scope ``'modzoo'`` and name the module that fills them in
``locations``, so a config with ``default_scope = 'modzoo'`` builds any part without
``custom_imports``. A lookup that fails names the registry and the closest names.
"""
import difflib

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import Registry


class ModzooRegistry(Registry):
    """A :class:`mmengine.registry.Registry` whose failed lookups explain themselves."""

    def build(self, cfg, *args, **kwargs):
        obj_type = cfg.get('type') if isinstance(cfg, dict) else None
        if isinstance(obj_type, str) and '.' not in obj_type:
            self.import_from_location()
            if self.get(obj_type) is None:
                names = sorted(self._all_names())
                close = difflib.get_close_matches(obj_type, names, n=5, cutoff=0.5)
                hint = f' Did you mean: {", ".join(close)}?' if close else ''
                raise KeyError(
                    f"'{obj_type}' is not in the '{self.name}' registry of scope "
                    f"'{self.scope}' (nor its parents).{hint}")
        return super().build(cfg, *args, **kwargs)

    def _all_names(self):
        names, registry = set(), self
        while registry is not None:
            names.update(registry.module_dict)
            registry = registry.parent
        return names


def _child(name, parent, *locations):
    return ModzooRegistry(name, parent=parent, scope='modzoo', locations=list(locations))


MODELS = _child('model', MMENGINE_MODELS, 'modzoo.models', 'modzoo.heads')
MODEL_WRAPPERS = _child('model_wrapper', MMENGINE_MODEL_WRAPPERS, 'modzoo.engine')
WEIGHT_INITIALIZERS = _child('weight initializer', MMENGINE_WEIGHT_INITIALIZERS, 'modzoo.models')
DATASETS = _child('dataset', MMENGINE_DATASETS, 'modzoo.datasets')
TRANSFORMS = _child('transform', MMENGINE_TRANSFORMS, 'modzoo.datasets')
DATA_SAMPLERS = _child('data sampler', MMENGINE_DATA_SAMPLERS, 'modzoo.datasets')
METRICS = _child('metric', MMENGINE_METRICS, 'modzoo.evaluation')
EVALUATOR = _child('evaluator', MMENGINE_EVALUATOR, 'modzoo.evaluation')
HOOKS = _child('hook', MMENGINE_HOOKS, 'modzoo.engine')
LOOPS = _child('loop', MMENGINE_LOOPS, 'modzoo.engine')
OPTIMIZERS = _child('optimizer', MMENGINE_OPTIMIZERS, 'modzoo.engine')
OPTIM_WRAPPERS = _child('optim_wrapper', MMENGINE_OPTIM_WRAPPERS, 'modzoo.engine')
OPTIM_WRAPPER_CONSTRUCTORS = _child('optimizer wrapper constructor',
                                    MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, 'modzoo.engine')
PARAM_SCHEDULERS = _child('parameter scheduler', MMENGINE_PARAM_SCHEDULERS, 'modzoo.engine')
TASK_UTILS = _child('task util', MMENGINE_TASK_UTILS, 'modzoo.models')
VISUALIZERS = _child('visualizer', MMENGINE_VISUALIZERS, 'modzoo.engine')
VISBACKENDS = _child('vis_backend', MMENGINE_VISBACKENDS, 'modzoo.engine')
# multi-task loss weightings and gradient combinations; mmengine has no such root, so this
# one is a root of scope 'modzoo' (built by MultiTaskOptimWrapper)
WEIGHTINGS = _child('weighting', None, 'modzoo.engine.weightings')
