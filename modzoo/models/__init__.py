from . import backbones, layers  # noqa: F401 (registers backbones and MoE layers)
from . import necks  # noqa: F401 (registers the necks)
from . import text  # noqa: F401 (registers tokenizers and text encoders)
from . import uniperceiver  # noqa: F401 (registers Uni-Perceiver v2 parts)
from .chameleon import Chameleon
from .episode_preprocessor import EpisodePreprocessor
from .multi_task_model import MultiTaskModel
from .multilane import MultiLane

__all__ = ['Chameleon', 'EpisodePreprocessor', 'MultiTaskModel', 'MultiLane']
