"""Analytic ray casting of a SynthScenes :class:`Scene` in numpy, vectorised over pixels.

Every primitive is a convex solid (a capsule, a union of three). A ray ``o + t d`` (``d`` a
unit vector) meets a convex solid on an interval ``[enter, exit]``: spheres, cylinders and
cones give theirs from a quadratic, boxes and caps from slabs, and the interval of an
intersection of solids is ``[max(enters), min(exits)]``. The nearest ``enter`` over all
solids (a z-buffer) gives the visible surface of each pixel; depth and normal come from that
one hit, so they are consistent. Shadow rays toward the light use the same intervals.

Camera-frame normals: x right (growing image column), y down (growing image row), z toward
the camera. A surface facing the camera has normal (0, 0, 1); the ground has
(0, -cos(pitch), sin(pitch)). Depth is the distance along the optical axis in metres.
"""
from dataclasses import dataclass

import numpy as np

from .scene import CAMERA_HEIGHT, CAMERA_PITCH_DEG, FOV_DEG, PASCAL_PARTS, SEMANTIC_CLASSES

PART_NAMES = tuple(PASCAL_PARTS)     # Rendering.limb value v >= 1 is PART_NAMES[v - 1]
_BIG = 1e30                          # 'no hit' for intervals: [BIG, -BIG] is empty
_SHADOW_OFFSET = 1e-3                # metres a shadow ray starts off its surface


@dataclass(frozen=True)
class Camera:
    """The pinhole camera of ``size`` x ``size`` images.

    origin [3]; axes [3, 3] rows: right, down, forward (world); rays [S*S, 3] unit
    directions through the pixel centres, row-major; z_per_t [S*S] optical-axis depth
    per unit ray length; focal in pixels.
    """
    origin: np.ndarray
    axes: np.ndarray
    rays: np.ndarray
    z_per_t: np.ndarray
    focal: float

    @classmethod
    def for_size(cls, size):
        pitch = np.radians(CAMERA_PITCH_DEG)
        axes = np.array([[1.0, 0.0, 0.0],
                         [0.0, -np.cos(pitch), -np.sin(pitch)],
                         [0.0, -np.sin(pitch), np.cos(pitch)]])
        focal = size / 2 / np.tan(np.radians(FOV_DEG) / 2)
        c = (np.arange(size) + 0.5 - size / 2) / focal
        rows, cols = np.meshgrid(c, c, indexing='ij')
        rays = np.stack([cols, rows, np.ones_like(rows)], -1).reshape(-1, 3) @ axes
        length = np.linalg.norm(rays, axis=1)
        return cls(np.array([0.0, CAMERA_HEIGHT, 0.0]), axes, rays / length[:, None],
                   1.0 / length, focal)

    def to_camera_frame(self, vectors):
        """World vectors [..., 3] in the camera frame x right, y down, z toward the camera."""
        return vectors @ (self.axes * [[1], [1], [-1]]).T


@dataclass(frozen=True)
class Rendering:
    """Pixel maps of one scene, each [S, S] (``image``, ``normal``: [S, S, 3]).

    image uint8 RGB; semantic uint8 (SEMANTIC_CLASSES index); instance int32 (0 ground or
    background, k >= 1: ``scene.objects[k - 1]``); limb uint8 (0 off figures, v: PART_NAMES
    [v - 1]); depth float32 metres (0 = sky); normal float32 camera-frame unit normal (0 =
    sky); silhouettes bool [K, S, S]: each object's pixels were nothing in front of it.
    """
    image: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    limb: np.ndarray
    depth: np.ndarray
    normal: np.ndarray
    silhouettes: np.ndarray

    @property
    def part(self):
        """uint8 [S, S] PART_CLASSES index (0 = not a figure part)."""
        return np.array((0, ) + tuple(PASCAL_PARTS.values()), np.uint8)[self.limb]

    @property
    def saliency(self):
        """uint8 [S, S] 1 on objects and figures, 0 on ground and background."""
        return (self.instance > 0).astype(np.uint8)

    @property
    def edge(self):
        """uint8 [S, S] 1 on semantic/instance boundaries, on the nearer side of each."""
        key = np.where(self.instance > 0, self.instance.astype(np.int64) + 1, self.semantic)
        near = np.where(self.depth > 0, self.depth, np.inf)
        edge = np.zeros(key.shape, bool)
        for a_key, b_key, a_near, b_near, a_edge, b_edge in (
                (key[:-1], key[1:], near[:-1], near[1:], edge[:-1], edge[1:]),
                (key[:, :-1], key[:, 1:], near[:, :-1], near[:, 1:], edge[:, :-1],
                 edge[:, 1:])):
            change = a_key != b_key
            a_edge |= change & (a_near <= b_near)
            b_edge |= change & (b_near <= a_near)
        return edge.astype(np.uint8)


def _dot(a, b):
    return np.sum(a * b, axis=-1)


def _slab(o, d, axis, lo, hi):
    """Interval of the rays inside ``lo <= axis . p <= hi`` and the normal where they enter."""
    s, v = _dot(o, axis), _dot(d, axis)
    v = np.where(np.abs(v) < 1e-12, 1e-12, v)
    t_lo, t_hi = (lo - s) / v, (hi - s) / v
    return np.minimum(t_lo, t_hi), np.maximum(t_lo, t_hi), np.where(v[:, None] > 0, -axis, axis)


def _roots(a, b, c):
    """Roots t1 <= t2 of a t^2 + 2 b t + c (a > 0) and whether they are real."""
    disc = b * b - a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    return (-b - root) / a, (-b + root) / a, disc >= 0


def _sphere(o, d, centre, radius):
    oc = o - centre
    t1, t2, real = _roots(1.0, _dot(oc, d), _dot(oc, oc) - radius * radius)
    enter, exit_ = np.where(real, t1, _BIG), np.where(real, t2, -_BIG)
    return enter, exit_, (oc + enter[:, None] * d) / radius


def _tube(o, d, point, axis, radius):
    """Infinite cylinder of ``radius`` around the line ``point + s axis``."""
    oc = o - point
    o_perp = oc - _dot(oc, axis)[..., None] * axis
    d_perp = d - _dot(d, axis)[:, None] * axis
    a = np.maximum(_dot(d_perp, d_perp), 1e-12)
    t1, t2, real = _roots(a, _dot(o_perp, d_perp), _dot(o_perp, o_perp) - radius * radius)
    enter = np.where(real, t1, _BIG)
    return enter, np.where(real, t2, -_BIG), (o_perp + enter[:, None] * d_perp) / radius


def _nappe(o, d, apex, axis, cos2):
    """Infinite cone opening from ``apex`` along ``axis`` with cos^2(half angle) ``cos2``."""
    co = o - apex
    da, oa = _dot(d, axis), _dot(co, axis)
    a = da * da - cos2
    a = np.where(np.abs(a) < 1e-12, 1e-12, a)
    b, c = da * oa - cos2 * _dot(d, co), oa * oa - cos2 * _dot(co, co)
    disc = b * b - a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    t1, t2 = (-b - root) / a, (-b + root) / a
    lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
    # a < 0: inside between the roots, if that segment lies on this nappe (not its mirror).
    # a > 0: inside beyond a root, on the side where the ray runs along the axis.
    between = (disc >= 0) & (oa + (lo + hi) / 2 * da >= 0)
    enter = np.where(a < 0, np.where(between, lo, _BIG),
                     np.where(disc < 0, -_BIG, np.where(da > 0, hi, -_BIG)))
    exit_ = np.where(a < 0, np.where(between, hi, -_BIG),
                     np.where((disc < 0) | (da > 0), _BIG, lo))
    w = co + enter[:, None] * d
    normal = cos2 * w - _dot(w, axis)[:, None] * axis
    return enter, exit_, normal / np.maximum(np.linalg.norm(normal, axis=1), 1e-12)[:, None]


def _intersect(*intervals):
    """Interval and entry normal of the intersection of convex solids."""
    enters = np.stack([i[0] for i in intervals])
    first = np.argmax(enters, axis=0)
    normals = np.stack([i[2] for i in intervals])
    return (enters.max(0), np.min([i[1] for i in intervals], axis=0),
            normals[first, np.arange(len(first))])


def _pieces(prim, o, d):
    """Convex pieces of ``prim`` as intervals (enter [P], exit [P], entry normal [P, 3])."""
    if prim.kind == 'sphere':
        return [_sphere(o, d, prim.p0, prim.radius)]
    if prim.kind == 'box':
        return [_intersect(*(_slab(o, d, axis, c - h, c + h)
                             for axis, c, h in zip(prim.axes, prim.axes @ prim.p0, prim.half)))]
    length = np.linalg.norm(prim.p1 - prim.p0)
    axis = (prim.p1 - prim.p0) / length
    span = _slab(o, d, axis, axis @ prim.p0, axis @ prim.p1)
    if prim.kind == 'cone':
        cos2 = length**2 / (length**2 + prim.radius**2)
        return [_intersect(_nappe(o, d, prim.p1, -axis, cos2), span)]
    body = _intersect(_tube(o, d, prim.p0, axis, prim.radius), span)
    if prim.kind == 'cylinder':
        return [body]
    return [body, _sphere(o, d, prim.p0, prim.radius), _sphere(o, d, prim.p1, prim.radius)]


def _near_bound(prim, o, d):
    """bool [P]: rays that meet the primitive's bounding sphere ahead of their origin."""
    centre, radius = prim.bounding_sphere()
    _, exit_, _ = _sphere(o, d, centre, radius * 1.001)
    return exit_ > 0


def cast(prim, o, d):
    """Nearest hit ``t`` [P] (inf = miss) and outward normal [P, 3] of rays o + t d.

    o: [3] or [P, 3] origins; d: [P, 3] unit directions.
    """
    t, normal = np.full(len(d), np.inf), np.zeros((len(d), 3))
    idx = np.flatnonzero(_near_bound(prim, o, d))
    if len(idx):
        for enter, exit_, n in _pieces(prim, o if o.ndim == 1 else o[idx], d[idx]):
            closer = (enter < exit_) & (enter > 0) & (enter < t[idx])
            t[idx[closer]], normal[idx[closer]] = enter[closer], n[closer]
    return t, normal


def blocks(prim, o, d):
    """bool [P]: whether the rays o + t d (t > 0) pass through the primitive."""
    hit = np.zeros(len(d), bool)
    idx = np.flatnonzero(_near_bound(prim, o, d))
    if len(idx):
        for enter, exit_, _ in _pieces(prim, o if o.ndim == 1 else o[idx], d[idx]):
            hit[idx] |= (enter < exit_) & (exit_ > 0)
    return hit


def _albedo(scene, surface, points, rays):
    """RGB [P, 3] of the ground, wall, sky and object surfaces (``surface``: -1 sky, 0
    ground, 1 wall, k >= 2 primitive k - 2)."""
    colour = np.zeros((len(surface), 3))
    sky = surface < 0
    horizon, zenith = scene.background_colours
    if scene.background == 'sky':
        w = np.clip(rays[sky, 1] / 0.5, 0, 1)[:, None]
        colour[sky] = (1 - w) * horizon + w * zenith
    ground = surface == 0
    x, z = points[ground, 0], points[ground, 2]
    dark = (np.floor(x / scene.checker) + np.floor(z / scene.checker)) % 2
    colour[ground] = scene.ground_colour * (1 - 0.2 * dark)[:, None]
    wall = surface == 1
    if wall.any():   # blocks of 1.6 x 0.8 m, each a little lighter or darker, in mortar
        brick, mortar = scene.background_colours
        v = points[wall, 1] / 0.8
        u = points[wall, 0] / 1.6 + 0.5 * (np.floor(v) % 2)
        shade = 0.9 + 0.2 * ((np.floor(v) * 7 + np.floor(u) * 13) % 5) / 4
        joint = (v % 1 < 0.1) | (u % 1 < 0.05)
        colour[wall] = np.where(joint[:, None], mortar, brick * shade[:, None])
    prims = [p for obj in scene.objects for p in obj.primitives]
    on_prim = surface >= 2
    if prims:
        colour[on_prim] = np.stack([p.colour for p in prims])[surface[on_prim] - 2]
    return colour


def render(scene):
    """Ray-cast ``scene`` into a :class:`Rendering`."""
    size = scene.size
    cam = Camera.for_size(size)
    origin, rays = cam.origin, cam.rays
    prims = [(k + 1, p) for k, obj in enumerate(scene.objects) for p in obj.primitives]
    # z-buffer over ground (half-space Y <= 0), wall (Z >= wall_distance) and primitives
    t = np.where(rays[:, 1] < 0, -origin[1] / np.minimum(rays[:, 1], -1e-12), np.inf)
    surface = np.where(np.isfinite(t), 0, -1)
    normal = np.zeros((len(rays), 3))
    normal[:, 1] = 1.0
    if np.isfinite(scene.wall_distance):
        t_wall = np.where(rays[:, 2] > 0, (scene.wall_distance - origin[2]) / rays[:, 2], np.inf)
        closer = t_wall < t
        t, surface[closer], normal[closer] = np.minimum(t, t_wall), 1, (0.0, 0.0, -1.0)
    silhouettes = np.zeros((len(scene.objects), len(rays)), bool)
    for k, (obj_id, prim) in enumerate(prims):
        t_k, n_k = cast(prim, origin, rays)
        silhouettes[obj_id - 1] |= np.isfinite(t_k)
        closer = t_k < t
        t, surface[closer], normal[closer] = np.minimum(t, t_k), k + 2, n_k[closer]
    hit = surface >= 0
    normal[~hit] = 0.0
    points = origin + np.where(hit, t, 0.0)[:, None] * rays

    # Lambert shading with cast shadows from the objects; the sky is not shaded.
    lambert = np.maximum(normal @ scene.light, 0.0)
    lit_idx = np.flatnonzero(lambert > 0)
    shadow_o = points[lit_idx] + _SHADOW_OFFSET * normal[lit_idx]
    shadow_d = np.broadcast_to(scene.light, shadow_o.shape)
    for _, prim in prims:
        lambert[lit_idx[blocks(prim, shadow_o, shadow_d)]] = 0.0
    shading = np.where(hit, scene.ambient + (1 - scene.ambient) * lambert, 1.0)
    colour = _albedo(scene, surface, points, rays) * shading[:, None]
    noise = np.random.default_rng(scene.noise_seed).normal(0, scene.noise_sigma, colour.shape)
    image = np.round(np.clip(colour + noise, 0, 1) * 255).astype(np.uint8)

    # per-surface labels: sky, ground, wall, then each primitive
    sem = [0, 1, 0] + [SEMANTIC_CLASSES.index(scene.objects[i - 1].cls) for i, _ in prims]
    inst = [0, 0, 0] + [i for i, _ in prims]
    limb = [0, 0, 0] + [PART_NAMES.index(p.part) + 1 if p.part else 0 for _, p in prims]
    lookup = surface + 1
    shape = (size, size)
    return Rendering(
        image=image.reshape(size, size, 3),
        semantic=np.array(sem, np.uint8)[lookup].reshape(shape),
        instance=np.array(inst, np.int32)[lookup].reshape(shape),
        limb=np.array(limb, np.uint8)[lookup].reshape(shape),
        depth=np.where(hit, t * cam.z_per_t, 0).astype(np.float32).reshape(shape),
        normal=cam.to_camera_frame(normal).astype(np.float32).reshape(size, size, 3),
        silhouettes=silhouettes.reshape(-1, size, size))
