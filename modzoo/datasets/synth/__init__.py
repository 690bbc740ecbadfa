"""SynthScenes: rendered scenes of 3-D shapes, written in the real datasets' formats.

``generate_synth_scenes(out, ...)`` renders the scene pool and writes the ImageNet, COCO
(instances and captions), ADE20K, NYUD-v2, PASCAL-Context and VOC layouts; ``python
tools/make_synth_data.py`` is its command line.
"""
from .generate import generate_synth_scenes, make_scene
from .scene import INSTANCE_CLASSES, OBJECT_CLASSES, PART_CLASSES, SEMANTIC_CLASSES

__all__ = ['generate_synth_scenes', 'make_scene', 'OBJECT_CLASSES', 'SEMANTIC_CLASSES',
           'PART_CLASSES', 'INSTANCE_CLASSES']
