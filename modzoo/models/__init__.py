# registers backbones, MoE layers, necks, tokenizers + text encoders, Uni-Perceiver v2 parts
from . import backbones, layers, necks, text, uniperceiver  # noqa: F401
from .chameleon import Chameleon
from .episode_preprocessor import EpisodePreprocessor
from .multi_task_model import MultiTaskModel
from .multilane import MultiLane

__all__ = ['Chameleon', 'EpisodePreprocessor', 'MultiTaskModel', 'MultiLane']
