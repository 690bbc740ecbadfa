"""Template captions of a SynthScenes scene: colours, shapes, sizes and relative positions."""
import numpy as np

from .scene import FIGURE

_COUNTS = ('no objects', 'one object', 'two objects', 'three objects', 'four objects')
NEAR = 5.0     # metres: an object closer than this is 'close to the camera'


def noun_phrase(obj):
    """'a large red sphere', 'a small figure'."""
    size = 'large' if obj.large else 'small'
    return f'a {size} figure' if obj.cls == FIGURE else f'a {size} {obj.colour_name} {obj.shape}'


def _sentence(text):
    return text[0].upper() + text[1:] + '.'


def _join(phrases):
    return phrases[0] if len(phrases) == 1 else ', '.join(phrases[:-1]) + ' and ' + phrases[-1]


def describe(scene, rendering):
    """Three caption sentences (list of str) for a scene and its Rendering.

    1. what stands on which ground in front of what; 2. the objects from left to right (or
    where the only one stands); 3. how the two largest ones are placed relative to each other
    (or how far the only one is).
    """
    size = scene.size
    objects = scene.objects
    masks = [rendering.instance == k + 1 for k in range(len(objects))]
    centre_x = [float(np.nonzero(m)[1].mean()) for m in masks]
    area = [int(m.sum()) for m in masks]
    backdrop = 'under a blue sky' if scene.background == 'sky' else 'in front of a brick wall'
    count = _COUNTS[len(objects)] if len(objects) < len(_COUNTS) else f'{len(objects)} objects'
    captions = [_sentence(f'{count} on a {scene.ground_tone} checkered ground {backdrop}')]
    if len(objects) == 1:
        third = min(int(3 * centre_x[0] / size), 2)
        where = ('on the left', 'in the middle', 'on the right')[third]
        near = objects[0].footprint[1] < NEAR
        captions += [
            _sentence(f'{noun_phrase(objects[0])} stands {where} of the image'),
            _sentence(f'{noun_phrase(objects[0])} is '
                      f'{"close to" if near else "far from"} the camera')]
        return captions
    order = np.argsort(centre_x, kind='stable')
    captions.append(_sentence('from left to right: ' +
                              _join([noun_phrase(objects[i]) for i in order])))
    a, b = np.argsort(area, kind='stable')[::-1][:2]
    if abs(centre_x[a] - centre_x[b]) > 0.15 * size:
        relation = 'left of' if centre_x[a] < centre_x[b] else 'right of'
    else:
        relation = 'in front of' if objects[a].footprint[1] < objects[b].footprint[1] else 'behind'
    captions.append(_sentence(f'{noun_phrase(objects[a])} is {relation} '
                              f'{noun_phrase(objects[b])}'))
    return captions
