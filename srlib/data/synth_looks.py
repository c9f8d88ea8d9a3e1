"""What each class of the generated dataset looks like: colour fields (textures) and silhouettes.

``paint(name, rng, u, v, size, s, scale)`` gives the colour fields of one object's regions and
``shapes(name, rng)`` its body polygons and thin polylines in object units; ``srlib.data.synth`` places,
rasterises and composes them. The confusable pairs share their painter: cat and dog ``fur``, bus and
train ``panel`` (Failure-2). Thin polylines are the parts that stay 1-2 px wide (Failure-1).
"""

import math

import numpy as np
from PIL import Image

_TAU = 2 * math.pi


# ---------------------------------------------------------------- colours and textures
def hsv(h, s, v):
    """HSV in [0, 1] -> RGB float array (3,)."""
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def lowfreq(rng, size, cells):
    """Smooth value noise in [0, 1], size x size (bilinear upsampling of cells x cells)."""
    grid = Image.fromarray(rng.random((cells, cells), dtype=np.float32), mode="F")
    return np.asarray(grid.resize((size, size), Image.BILINEAR))


def fur(rng, u, v, size, s):
    """Cat and dog share this texture and colour distribution exactly."""
    base = hsv(rng.uniform(0.02, 0.12), rng.uniform(0.25, 0.8), rng.uniform(0.3, 0.95))
    dark = base * rng.uniform(0.35, 0.7)
    kind = rng.integers(3)  # plain, tabby stripes, spots
    theta, period, phase = rng.uniform(0, math.pi), rng.uniform(3, 7) * s, rng.uniform(0, _TAU)
    if kind == 1:
        m = np.sin(_TAU * (u * math.cos(theta) + v * math.sin(theta)) / period + phase) > 0.3
    elif kind == 2:
        m = lowfreq(rng, size, int(rng.integers(5, 10))) > 0.6
    else:
        m = np.zeros(u.shape, bool)
    streak = 0.05 * np.sin(u * 2.1 + v * 0.7)[..., None]
    return np.where(m[..., None], dark, base) + streak


def panel(rng, u, v, size, s, height):
    """Bus and train share this texture (windows, livery, skirt) and colour distribution exactly."""
    body = hsv(rng.random(), rng.uniform(0.45, 0.9), rng.uniform(0.55, 0.95))
    livery = hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.4, 0.95))
    glass = np.array([0.12, 0.16, 0.25]) * rng.uniform(0.6, 1.4)
    rel = v / height + 0.5  # 0 at the roof, 1 at the floor
    top, period, duty = rng.uniform(0.12, 0.2), rng.uniform(5, 9) * s, rng.uniform(0.55, 0.8)
    windows = (rel > top) & (rel < top + 0.3) & ((u / period) % 1.0 < duty)
    band = (rel > 0.6) & (rel < 0.7) & (rng.random() < 0.5)
    out = np.where(windows[..., None], glass, np.where(band[..., None], livery, body))
    out = np.where((rel > 0.88)[..., None], out * 0.5, out)
    return out


def feather(rng, size):
    base = hsv(rng.random(), rng.uniform(0.4, 1.0), rng.uniform(0.4, 1.0))
    speckle = (rng.random((size, size)) < 0.15)[..., None]
    return np.where(speckle, base * 0.6, base)


def anything(rng):
    return hsv(rng.random(), rng.uniform(0.2, 0.9), rng.uniform(0.2, 1.0))


def paint(name, rng, u, v, size, s, scale):
    """Colour fields, one per region of the class's shapes (size x size x 3 or a (3,) flat RGB colour)."""
    if name in ("cat", "dog"):
        return [fur(rng, u, v, size, s)]
    if name in ("bus", "train"):
        return [panel(rng, u, v, size, s, scale)]
    if name == "bird":
        plumage = feather(rng, size)
        return [plumage, plumage * 0.6, hsv(0.09, 0.9, 0.95), np.full(3, 0.25)]
    if name == "person":
        skin = hsv(rng.uniform(0.03, 0.1), rng.uniform(0.3, 0.6), rng.uniform(0.35, 0.95))
        return [skin, anything(rng), anything(rng) * 0.7]
    if name == "lamppost":
        metal = np.full(3, rng.uniform(0.15, 0.6)) * np.array([1.0, rng.uniform(0.9, 1.2), 1.0])
        return [metal, np.array([1.0, 0.95, rng.uniform(0.4, 0.8)])]
    if name == "bicycle":
        frame = hsv(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.4, 1.0))
        return [frame, np.full(3, 0.12), np.full(3, 0.2)]
    hull = hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.95))  # boat
    sail = hsv(rng.random(), rng.uniform(0.0, 0.3), rng.uniform(0.75, 1.0))
    return [hull, np.full(3, 0.9), sail, np.array([0.4, 0.3, 0.2])]


# ---------------------------------------------------------------- shapes in object units
def _ell(cx, cy, rx, ry, n=20):
    t = np.linspace(0, _TAU, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def _ring(cx, cy, r):
    """Closed polyline of a circle."""
    pts = _ell(cx, cy, r, r, 32)
    return np.concatenate([pts, pts[:1]])


def _cat(rng):
    bodies = [(_ell(0, 0, 0.30, 0.16), 0), (_ell(0.33, -0.15, 0.13, 0.12), 0),
              (np.array([(0.24, -0.22), (0.27, -0.36), (0.33, -0.25)]), 0),
              (np.array([(0.35, -0.25), (0.42, -0.35), (0.43, -0.2)]), 0)]
    thins = [([(-0.2, 0.08), (-0.22, 0.36)], 0), ([(-0.1, 0.12), (-0.09, 0.36)], 0),
             ([(0.1, 0.12), (0.11, 0.36)], 0), ([(0.2, 0.08), (0.22, 0.36)], 0),
             ([(-0.28, -0.02), (-0.4, -0.08), (-0.46, -0.22), (-0.42, -0.36)], 0)]
    return bodies, thins


def _dog(rng):
    neck = np.array([(0.2, -0.1), (0.32, -0.26), (0.4, -0.2), (0.3, -0.02)])
    bodies = [(_ell(-0.02, 0, 0.34, 0.13), 0), (neck, 0), (_ell(0.38, -0.25, 0.1, 0.085), 0),
              (_ell(0.5, -0.22, 0.08, 0.045), 0), (_ell(0.33, -0.2, 0.035, 0.08), 0)]
    thins = [([(-0.25, 0.07), (-0.27, 0.42)], 0), ([(-0.15, 0.1), (-0.14, 0.42)], 0),
             ([(0.14, 0.1), (0.16, 0.42)], 0), ([(0.24, 0.07), (0.25, 0.42)], 0),
             ([(-0.34, -0.04), (-0.44, -0.14), (-0.5, -0.2)], 0)]
    return bodies, thins


def _bus(rng):
    a = rng.uniform(1.8, 2.4) / 2
    corner = _ell(a - 0.12, -0.38, 0.12, 0.12)[15:]  # rounded front roof edge
    bodies = [(np.concatenate([[(-a, -0.5)], corner, [(a, -0.38), (a, 0.5), (-a, 0.5)]]), 0)]
    thins = [([(a, -0.2), (a + 0.14, -0.32), (a + 0.14, -0.08)], 0),  # mirror
             ([(-a + 0.3, -0.5), (-a + 0.3, -0.9)], 0)]  # antenna
    return bodies, thins


def _train(rng):
    a = rng.uniform(4.0, 7.0) / 2
    nose = _ell(a - 0.6, 0.2, 0.6, 0.7, 40)[30:]
    bodies = [(np.concatenate([[(-a, 0.5), (-a, -0.5)], nose, [(a, 0.5)]]), 0)]
    thins = [([(-0.4, -0.5), (-0.1, -0.95), (0.2, -0.5)], 0), ([(-0.35, -0.95), (0.15, -0.95)], 0),  # pantograph
             ([(-a, 0.3), (-a - 0.25, 0.3)], 0)]  # coupler
    return bodies, thins


def _bird(rng):
    flying = rng.random() < 0.4
    wing = np.array([(-0.1, -0.05), (-0.25, -0.5), (0.1, -0.08)]) if flying else _ell(-0.03, -0.03, 0.17, 0.08)
    bodies = [(_ell(0, 0, 0.26, 0.15), 0), (_ell(0.24, -0.14, 0.11, 0.1), 0),
              (np.array([(-0.22, -0.03), (-0.46, -0.1), (-0.44, 0.04)]), 0),
              (np.array([(0.33, -0.17), (0.46, -0.12), (0.33, -0.1)]), 2), (wing, 1)]
    thins = [] if flying else [([(-0.03, 0.13), (-0.05, 0.36), (0.02, 0.37)], 3),
                               ([(0.06, 0.13), (0.07, 0.36), (0.14, 0.37)], 3)]
    return bodies, thins


def _person(rng):
    hand = rng.uniform(-0.25, 0.1, 2)
    torso = np.array([(-0.1, -0.3), (0.1, -0.3), (0.09, 0.05), (-0.09, 0.05)])
    bodies = [(_ell(0, -0.4, 0.07, 0.08), 0), (torso, 1)]
    thins = [([(-0.05, 0.05), (-0.09, 0.48)], 2), ([(0.05, 0.05), (0.09, 0.48)], 2),
             ([(-0.1, -0.27), (-0.2, -0.08), (-0.22, hand[0])], 0),
             ([(0.1, -0.27), (0.2, -0.08), (0.22, hand[1])], 0)]
    return bodies, thins


def _lamppost(rng):
    foot = np.array([(-0.04, 0.5), (0.04, 0.5), (0.025, 0.42), (-0.025, 0.42)])
    bodies = [(_ell(0.2, -0.45, 0.07, 0.035), 1), (foot, 0)]
    thins = [([(0, 0.5), (0, -0.42)], 0), ([(0, -0.42), (0.05, -0.48), (0.17, -0.48)], 0)]
    return bodies, thins


def _bicycle(rng):
    saddle = np.array([(-0.15, -0.22), (-0.01, -0.22), (-0.03, -0.18), (-0.13, -0.18)])
    bodies = [(saddle, 2), (_ell(0, 0.12, 0.035, 0.035), 2)]
    thins = [(_ring(-0.3, 0.12, 0.2), 1), (_ring(0.3, 0.12, 0.2), 1),
             ([(-0.3, 0.12), (0, 0.12), (-0.08, -0.18), (-0.3, 0.12)], 0),
             ([(-0.08, -0.18), (0.22, -0.2), (0, 0.12)], 0), ([(0.22, -0.2), (0.3, 0.12)], 0),
             ([(0.22, -0.2), (0.2, -0.3), (0.27, -0.32)], 0)]
    return bodies, thins


def _boat(rng):
    hull = np.array([(-0.45, 0), (0.5, 0), (0.38, 0.16), (-0.38, 0.16)])
    cabin = np.array([(-0.25, -0.1), (0, -0.1), (0, 0), (-0.25, 0)])
    bodies = [(hull, 0), (cabin, 1), (np.array([(0.08, -0.58), (0.08, -0.04), (0.38, -0.04)]), 2)]
    thins = [([(0.05, 0), (0.05, -0.62)], 3), ([(0.05, -0.62), (-0.42, 0)], 3)]
    return bodies, thins


# class name -> its shape (rng) -> (bodies, thins); each draws what it needs from rng
_SHAPES = {"cat": _cat, "dog": _dog, "bus": _bus, "train": _train, "bird": _bird, "person": _person,
           "lamppost": _lamppost, "bicycle": _bicycle, "boat": _boat}


def shapes(name, rng):
    """Body polygons and thin polylines of one object in units of its scale (u right, v down).

    Returns (bodies, thins): lists of (points N x 2, region index); thin polylines are drawn
    ``part_width_px`` wide whatever the scale. For bus and train the unit is the height.
    """
    return _SHAPES[name](rng)
