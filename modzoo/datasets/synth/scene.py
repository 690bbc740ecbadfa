"""SynthScenes: the class lists, the camera and random scenes of 3-D primitives.

World frame (metres): X right, Y up, Z forward (away from the camera). The ground is the
plane Y = 0; every object rests on it. The camera is fixed for all scenes: it stands
``CAMERA_HEIGHT`` above the origin and looks along +Z, pitched down by ``CAMERA_PITCH_DEG``,
with a square ``FOV_DEG`` field of view (pinhole, principal point at the image centre).

A scene holds 1-4 objects: primitives of ``OBJECT_CLASSES`` (one shape and one colour family
per class; colours are jittered inside the family) and, in about a third of the scenes, one
articulated ``'figure'`` made of a sphere head, a box torso and capsule limbs, each limb
carrying a PASCAL-Part name ('luarm', 'rlleg', ...).
"""
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

# class -> (shape, colour family); the classes' colour families are all distinct.
_OBJECT_SPECS = {
    'red_sphere': ('sphere', 'red'),
    'blue_box': ('box', 'blue'),
    'green_cylinder': ('cylinder', 'green'),
    'yellow_cone': ('cone', 'yellow'),
    'purple_capsule': ('capsule', 'purple'),
    'orange_box': ('box', 'orange'),
    'cyan_sphere': ('sphere', 'cyan'),
    'pink_cylinder': ('cylinder', 'pink'),
    'white_cone': ('cone', 'white'),
    'brown_capsule': ('capsule', 'brown'),
}
COLOURS = {  # albedo RGB in [0, 1] of each colour family
    'red': (0.85, 0.10, 0.10), 'blue': (0.10, 0.25, 0.90), 'green': (0.15, 0.70, 0.15),
    'yellow': (0.95, 0.85, 0.10), 'purple': (0.50, 0.15, 0.75), 'orange': (0.95, 0.50, 0.05),
    'cyan': (0.10, 0.80, 0.85), 'pink': (0.95, 0.45, 0.70), 'white': (0.93, 0.93, 0.93),
    'brown': (0.50, 0.30, 0.12),
}
FIGURE = 'figure'
OBJECT_CLASSES = tuple(_OBJECT_SPECS)
# Label value = index: 0 sky or wall, 1 ground, 2..11 the object classes, 12 the figure.
SEMANTIC_CLASSES = ('background', 'ground') + OBJECT_CLASSES + (FIGURE, )
# Every class an image can be labelled with (ImageNet folders, COCO categories, VOC names).
INSTANCE_CLASSES = OBJECT_CLASSES + (FIGURE, )
PART_CLASSES = ('background', 'head', 'torso', 'upper_arm', 'lower_arm', 'upper_leg',
                'lower_leg')
# PASCAL-Part name of each figure primitive -> index in PART_CLASSES (InvPT's 6-part merge).
PASCAL_PARTS = {'head': 1, 'torso': 2, 'luarm': 3, 'ruarm': 3, 'llarm': 4, 'rlarm': 4,
                'luleg': 5, 'ruleg': 5, 'llleg': 6, 'rlleg': 6}

CAMERA_HEIGHT = 1.6
CAMERA_PITCH_DEG = 14.0
FOV_DEG = 45.0

FIGURE_PROB = 0.38          # chance that a scene holds a figure
LARGE_SIZE = 0.7            # object scale (metres) from which captions call it 'large'
LARGE_FIGURE = 1.65         # figure height (metres) from which captions call it 'large'
_NUM_OBJECTS_P = (0.2, 0.35, 0.3, 0.15)   # P(1..4 objects)
_GROUND_TONES = {'gray': (0.55, 0.55, 0.52), 'sandy': (0.76, 0.68, 0.50),
                 'grassy': (0.38, 0.50, 0.30), 'brown': (0.45, 0.36, 0.27)}
_WALL_TONES = {'beige': (0.82, 0.76, 0.64), 'gray': (0.62, 0.62, 0.65),
               'brick': (0.60, 0.38, 0.30)}
_SKIN = ((0.96, 0.80, 0.69), (0.88, 0.67, 0.49), (0.65, 0.45, 0.30), (0.45, 0.30, 0.20))
_SHIRTS = ((0.30, 0.30, 0.35), (0.15, 0.20, 0.35), (0.50, 0.15, 0.20), (0.25, 0.35, 0.20),
           (0.85, 0.85, 0.80))
_TROUSERS = ((0.10, 0.12, 0.25), (0.18, 0.18, 0.18), (0.45, 0.38, 0.28))


@dataclass(frozen=True)
class Primitive:
    """One convex solid (a capsule is a union of three), in world coordinates.

    sphere: ``p0`` centre, ``radius``. box: ``p0`` centre, ``axes`` [3, 3] (rows: unit axes),
    ``half`` [3] half extents. cylinder and capsule: axis from ``p0`` to ``p1``, ``radius``.
    cone: ``p0`` base centre, ``p1`` apex, ``radius`` of the base.
    """
    kind: str
    p0: np.ndarray
    colour: np.ndarray                 # albedo RGB [3] in [0, 1]
    radius: float = 0.0
    p1: Optional[np.ndarray] = None
    axes: Optional[np.ndarray] = None
    half: Optional[np.ndarray] = None
    part: str = ''                     # PASCAL-Part name ('head', 'luarm', ...) for figures

    def bounding_sphere(self):
        """(centre [3], radius) of a sphere that contains the primitive."""
        if self.kind == 'sphere':
            return self.p0, self.radius
        if self.kind == 'box':
            return self.p0, float(np.linalg.norm(self.half))
        centre = (self.p0 + self.p1) / 2
        return centre, float(np.linalg.norm(self.p1 - self.p0)) / 2 + self.radius


@dataclass(frozen=True)
class SceneObject:
    """An object class instance: its primitives, size and footprint on the ground."""
    cls: str                           # a name of INSTANCE_CLASSES
    primitives: tuple
    large: bool                        # size word for captions
    footprint: tuple                   # (x, z, radius) of a ground disc that holds it

    @property
    def colour_name(self):
        return _OBJECT_SPECS[self.cls][1] if self.cls in _OBJECT_SPECS else None

    @property
    def shape(self):
        return _OBJECT_SPECS[self.cls][0] if self.cls in _OBJECT_SPECS else FIGURE


@dataclass(frozen=True)
class Scene:
    """Everything the renderer needs; ``objects`` order gives the instance ids (1-based)."""
    size: int                          # image side in pixels
    objects: tuple
    light: np.ndarray                  # unit vector toward the light (world)
    ambient: float
    ground_tone: str
    ground_colour: np.ndarray          # RGB of the light checker squares
    checker: float                     # checker square side in metres
    background: str                    # 'sky' or 'wall'
    background_colours: tuple          # sky: (horizon, zenith); wall: (brick, mortar)
    wall_distance: float               # Z of the wall plane (inf for sky)
    noise_seed: int                    # seeds the renderer's pixel noise
    noise_sigma: float = 0.015

    def without(self, drop):
        """The scene minus the objects whose indices are in ``drop``."""
        drop = set(drop)
        return replace(self, objects=tuple(o for i, o in enumerate(self.objects)
                                           if i not in drop))


def _jitter(rng, rgb, sigma=0.04):
    rgb = np.asarray(rgb) * rng.uniform(0.85, 1.1) + rng.normal(0, sigma, 3)
    return np.clip(rgb, 0.0, 1.0)


def _yaw_axes(yaw):
    """[3, 3] rows: the object's local x, y (up), z axes after a rotation about Y."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])


def _make_object(cls, rng, x, z):
    """A SceneObject of class ``cls`` standing on the ground at (x, z)."""
    shape, family = _OBJECT_SPECS[cls]
    colour = _jitter(rng, COLOURS[family])
    s = rng.uniform(0.4, 0.95)
    base = np.array([x, 0.0, z])
    if shape == 'sphere':
        prim = Primitive('sphere', base + [0, s, 0], colour, radius=s)
        reach = s
    elif shape == 'box':
        half = s * rng.uniform([0.7, 0.6, 0.7], [1.0, 1.0, 1.0])
        prim = Primitive('box', base + [0, half[1], 0], colour,
                         axes=_yaw_axes(rng.uniform(0, np.pi)), half=half)
        reach = float(np.hypot(half[0], half[2]))
    elif shape == 'cylinder':
        r, h = s * rng.uniform(0.55, 0.8), s * rng.uniform(1.6, 2.4)
        prim = Primitive('cylinder', base, colour, radius=r, p1=base + [0, h, 0])
        reach = r
    elif shape == 'cone':
        r, h = s * rng.uniform(0.75, 0.95), s * rng.uniform(1.8, 2.6)
        prim = Primitive('cone', base, colour, radius=r, p1=base + [0, h, 0])
        reach = r
    else:  # a capsule lying on the ground
        r, half_len = s * rng.uniform(0.4, 0.5), s * rng.uniform(0.9, 1.3)
        axis = _yaw_axes(rng.uniform(0, np.pi))[0] * half_len
        centre = base + [0, r, 0]
        prim = Primitive('capsule', centre - axis, colour, radius=r, p1=centre + axis)
        reach = half_len + r
    return SceneObject(cls, (prim, ), bool(s >= LARGE_SIZE), (x, z, reach))


def _limb(start, length, swing, spread, side):
    """End point of a limb hanging from ``start``: swing forward (rad), spread sideways."""
    direction = np.array([side * np.sin(spread), -np.cos(spread) * np.cos(swing),
                          np.cos(spread) * np.sin(swing)])
    return start + length * direction


def _make_figure(rng, x, z):
    """An articulated figure (head, torso, upper/lower arms and legs) standing at (x, z)."""
    height = rng.uniform(1.35, 1.9)
    u = height / 1.75                      # proportions of a 1.75 m person
    skin, shirt, trousers = (_jitter(rng, p[rng.integers(len(p))], 0.02)
                             for p in (_SKIN, _SHIRTS, _TROUSERS))
    torso_half = np.array([0.18, 0.30, 0.10]) * u
    hip_y = 0.9 * u
    prims = [Primitive('sphere', np.array([0, hip_y + 0.73 * u, 0]), skin, radius=0.12 * u,
                       part='head'),
             Primitive('box', np.array([0, hip_y + torso_half[1], 0]), shirt,
                       axes=np.eye(3), half=torso_half, part='torso')]
    stride = rng.uniform(0, 0.45)
    for side, tag in ((1, 'l'), (-1, 'r')):   # it faces +z before its yaw, so its left is +x
        swing, spread, bend = rng.uniform(-0.6, 0.6), rng.uniform(0.1, 1.3), rng.uniform(0, 1)
        shoulder = np.array([side * (torso_half[0] + 0.06 * u), hip_y + 0.54 * u, 0])
        elbow = _limb(shoulder, 0.30 * u, swing, spread, side)
        hand = _limb(elbow, 0.28 * u, swing + bend, spread, side)
        hip = np.array([side * 0.09 * u, hip_y, 0])
        leg_swing = side * stride
        knee = _limb(hip, 0.44 * u, leg_swing, 0.05, side)
        foot = _limb(knee, 0.44 * u, leg_swing - rng.uniform(0, 0.5), 0.05, side)
        prims += [
            Primitive('capsule', shoulder, shirt, radius=0.06 * u, p1=elbow, part=tag + 'uarm'),
            Primitive('capsule', elbow, skin, radius=0.05 * u, p1=hand, part=tag + 'larm'),
            Primitive('capsule', hip, trousers, radius=0.075 * u, p1=knee, part=tag + 'uleg'),
            Primitive('capsule', knee, trousers, radius=0.065 * u, p1=foot, part=tag + 'lleg')]
    # Stand on the ground: lift the figure so its lowest point touches Y = 0, then place it.
    lowest = min(min(p.p0[1], p.p1[1]) - p.radius for p in prims if p.kind == 'capsule')
    axes = _yaw_axes(rng.uniform(0, 2 * np.pi))
    offset = np.array([x, -lowest, z])

    def place(p):
        moved = dict(p0=p.p0 @ axes + offset)
        if p.p1 is not None:
            moved['p1'] = p.p1 @ axes + offset
        if p.axes is not None:
            moved['axes'] = p.axes @ axes
        return replace(p, **moved)

    return SceneObject(FIGURE, tuple(place(p) for p in prims), bool(height >= LARGE_FIGURE),
                       (x, z, 0.45 * u))


def _place(rng, cls, placed):
    """An object of ``cls`` at a free spot inside the view, or None when none was found."""
    half_fov = np.tan(np.radians(FOV_DEG) / 2)
    for _ in range(30):
        z = rng.uniform(2.5, 5.5 if cls == FIGURE else 7.0)
        x = rng.uniform(-0.85, 0.85) * half_fov * z
        obj = _make_figure(rng, x, z) if cls == FIGURE else _make_object(cls, rng, x, z)
        ox, oz, reach = obj.footprint
        if all(np.hypot(ox - px, oz - pz) > reach + preach + 0.1
               for px, pz, preach in (o.footprint for o in placed)):
            return obj
    return None


def sample_scene(rng, size):
    """A random Scene for ``size`` x ``size`` pixels drawn from ``rng`` (np.random.Generator)."""
    num = int(rng.choice(len(_NUM_OBJECTS_P), p=_NUM_OBJECTS_P)) + 1
    classes = [OBJECT_CLASSES[i] for i in rng.integers(len(OBJECT_CLASSES), size=num)]
    if rng.random() < FIGURE_PROB:
        classes[rng.integers(num)] = FIGURE
    objects = []
    for cls in classes:
        obj = _place(rng, cls, objects)
        if obj is not None:
            objects.append(obj)
    elevation = rng.uniform(np.radians(35), np.radians(70))
    azimuth = rng.uniform(-np.radians(70), np.radians(70))   # lit from the camera's side
    light = np.array([np.cos(elevation) * np.sin(azimuth), np.sin(elevation),
                      -np.cos(elevation) * np.cos(azimuth)])
    ground_tone = str(rng.choice(list(_GROUND_TONES)))
    if rng.random() < 0.5:
        background = 'sky'
        colours = (_jitter(rng, (0.80, 0.87, 0.95), 0.02), _jitter(rng, (0.35, 0.55, 0.90), 0.03))
        wall_distance = np.inf
    else:
        background = 'wall'
        brick = _jitter(rng, _WALL_TONES[str(rng.choice(list(_WALL_TONES)))], 0.02)
        colours = (brick, np.clip(brick * 1.25 + 0.1, 0, 1))
        wall_distance = rng.uniform(11.0, 16.0)
    return Scene(size=size, objects=tuple(objects), light=light,
                 ambient=rng.uniform(0.3, 0.45), ground_tone=ground_tone,
                 ground_colour=_jitter(rng, _GROUND_TONES[ground_tone], 0.02),
                 checker=rng.uniform(0.5, 1.2), background=background,
                 background_colours=colours, wall_distance=wall_distance,
                 noise_seed=int(rng.integers(2**31)))
