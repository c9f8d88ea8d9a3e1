"""The painter of the embedded generated dataset: ``generate`` writes it (``srlib.data.generated`` reads it).

Every image provokes the two failures the Self-Regulation paper names:

- Failure-1 (fine detail): objects carry thin parts (legs, tails, arms, poles, masts, wheel rims)
  1-2 px wide at 64 x 64 (``part_width_px`` scales with ``size / 64``), and some objects are small
  (< 1 % of the image). ``parts`` masks mark the thin-part pixels so they can be scored.
- Failure-2 (local ambiguity): two pairs of classes, cat/dog and bus/train, are painted by the same
  texture code with the same colour distribution; they differ only in silhouette and context
  (road vs. rails), so a patch of a large object is locally ambiguous.

Backgrounds are textured and cluttered (gradients, noise, stripes, distractor blobs painted with
object textures, thin wires and twigs, context bands shown without their object), and every image
gets a random colour jitter. Numpy + Pillow only; deterministic: each image draws from
``SeedSequence([seed, split, index])``, so the files do not depend on ``workers``. Each class's textures
and silhouettes are in ``srlib.data.synth_looks``; the layout on disk, the reader and the sample grid in
``srlib.data.generated``; the default parameters are ``srlib.data.GENERATE_DEFAULTS``.
"""

import json
import math
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from srlib.config import IGNORE_INDEX
from srlib.data import GENERATE_DEFAULTS
from srlib.data.generated import CLASSES, NUM_CLASSES, PALETTE, SPLITS, existing_stats
from srlib.data.synth_looks import anything, feather, fur, hsv, lowfreq, paint, panel, shapes
from srlib.palette import color_table

CONFUSABLE_PAIRS = (("cat", "dog"), ("bus", "train"))
SMALL_OBJECT_FRACTION = 0.01  # an object is small when its visible area is below 1 % of the image
GENERATOR_VERSION = 1  # bump whenever the images change, so a stale root is not reused

_OBJECTS = CLASSES[1:]
_PARTNER = {a: b for pair in CONFUSABLE_PAIRS for a, b in (pair, pair[::-1])}
_TAU = 2 * math.pi
_D = GENERATE_DEFAULTS


# ---------------------------------------------------------------- composing one image
_SCALE = {  # (min, max) object scale in image sizes for a primary object; bus/train: height
    "cat": (0.65, 1.1), "dog": (0.7, 1.15), "bus": (0.28, 0.5), "train": (0.28, 0.5), "bird": (0.5, 0.9),
    "person": (0.7, 1.0), "lamppost": (0.75, 1.05), "bicycle": (0.6, 1.0), "boat": (0.7, 1.05),
}
_TILT = {"cat": 0.2, "dog": 0.2, "bird": 0.3, "bicycle": 0.15, "boat": 0.15, "person": 0.1, "lamppost": 0.05}


class _Canvas:
    """One image being composed: float RGB, class labels, instance ids and thin-part candidates."""

    def __init__(self, size, s):
        self.size, self.s = size, s
        self.image = np.zeros((size, size, 3))
        self.label = np.zeros((size, size), np.int64)
        self.instance = np.zeros((size, size), np.int64)
        self.thin = np.zeros((size, size), bool)
        yy, xx = np.mgrid[0:size, 0:size]
        self.x, self.y = xx.astype(float), yy.astype(float)
        self.objects = 0  # instances drawn so far

    def fill(self, where, colour):
        self.image[where] = colour[where] if np.ndim(colour) == 3 else colour


def _raster(size, polys, lines, width):
    """Region map (int, 0 = empty, r + 1 = region r) of filled polygons or of polylines ``width`` px wide."""
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    for pts, region in polys:
        draw.polygon([tuple(p) for p in pts], fill=region + 1)
    for pts, region in lines:
        draw.line([tuple(p) for p in pts], fill=region + 1, width=width, joint="curve" if width > 1 else None)
    return np.asarray(img)


def _draw_object(rng, cv, name, scale, cx, cy, thin_part_prob, commit=True):
    """Rasterise one object at centre (cx, cy) px, scale px, over what is drawn; returns its unoccluded mask.

    commit=False only measures the mask; the same rng seed then commits the same shape.
    """
    bodies, thins = shapes(name, rng)
    thins = [t for t in thins if rng.random() < thin_part_prob]
    angle = rng.uniform(-1, 1) * _TILT.get(name, 0.0)
    flip = 1.0 if rng.random() < 0.5 else -1.0
    width = cv.s * (1 if rng.random() < 0.6 else 2)
    c, sn = math.cos(angle), math.sin(angle)

    def place(pts):
        p = np.asarray(pts, float) * scale
        x, y = p[:, 0] * flip, p[:, 1]
        return np.stack([cx + x * c - y * sn, cy + x * sn + y * c], 1)

    body = _raster(cv.size, [(place(p), r) for p, r in bodies], [], 1)
    thin = _raster(cv.size, [], [(place(p), r) for p, r in thins], width)
    region = np.where(body > 0, body, thin)
    mask = region > 0
    if commit:
        dx, dy = cv.x - cx, cv.y - cy
        u, v = (dx * c + dy * sn) * flip, -dx * sn + dy * c  # object-local px, so textures move with it
        for r, field in enumerate(paint(name, rng, u, v, cv.size, cv.s, scale)):
            cv.fill(region == r + 1, field)
        cv.objects += 1
        cv.label[mask], cv.instance[mask] = CLASSES.index(name), cv.objects
        cv.thin[mask] = (thin > 0)[mask] & (body == 0)[mask]
    return mask


def _background(rng, cv):
    size, s = cv.size, cv.s
    top = hsv(rng.random(), rng.uniform(0.1, 0.6), rng.uniform(0.3, 0.95))
    bottom = hsv(rng.random(), rng.uniform(0.1, 0.7), rng.uniform(0.2, 0.8))
    horizon = rng.uniform(0.2, 0.8) * size
    t = np.clip((cv.y - horizon) / (0.15 * size) + 0.5, 0, 1)[..., None]
    img = top * (1 - t) + bottom * t
    img = img * (0.8 + 0.4 * lowfreq(rng, size, int(rng.integers(3, 8))))[..., None]
    if rng.random() < 0.5:
        theta, period = rng.uniform(0, math.pi), rng.uniform(3, 14) * s
        wave = np.sin(_TAU * (cv.x * math.cos(theta) + cv.y * math.sin(theta)) / period)
        img = img + rng.uniform(0.04, 0.2) * wave[..., None]
    cv.image[:] = img


def _clutter(rng, cv):
    """Background-class distractors: blobs (some with object textures) and thin wires/twigs."""
    size, s = cv.size, cv.s
    for _ in range(int(rng.integers(2, 8))):
        (cx, cy), r = rng.uniform(0, size, 2), rng.uniform(0.04, 0.18) * size
        n = int(rng.integers(5, 10))
        ang = np.sort(rng.uniform(0, _TAU, n))
        rad = r * rng.uniform(0.5, 1.0, n)
        blob = _raster(size, [(np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1), 0)], [], 1) > 0
        if rng.random() < 0.3:  # a patch of an object texture labelled background: tempts hallucination
            texture = int(rng.integers(3))
            colour = (fur(rng, cv.x, cv.y, size, s) if texture == 0 else feather(rng, size)
                      if texture == 1 else panel(rng, cv.x, cv.y - cy, size, s, 2 * r))
        else:
            colour = anything(rng)
        cv.fill(blob, colour)
    for _ in range(int(rng.integers(0, 4))):
        pts = rng.uniform(-0.1, 1.1, (int(rng.integers(2, 5)), 2)) * size
        line = _raster(size, [], [(pts, 0)], s * int(rng.integers(1, 3))) > 0
        cv.fill(line, hsv(rng.random(), rng.uniform(0, 0.6), rng.uniform(0.05, 0.9)))


def _context(rng, cv, kind, y):
    """Scene context in the background class: a road, rails with catenary, or water, at ground row y px."""
    size, s = cv.size, cv.s
    row = cv.y
    if kind == "road":
        road = (row >= y - 2 * s) & (row < y + rng.uniform(0.1, 0.3) * size)
        cv.fill(road, np.full(3, rng.uniform(0.2, 0.45)))
        mid = y + rng.uniform(0.05, 0.12) * size
        cv.fill(road & (np.abs(row - mid) < s) & ((cv.x / (6 * s)) % 1 < 0.5), np.array([0.95, 0.9, 0.5]))
    elif kind == "rails":
        cv.fill((row >= y) & (row < y + 4 * s), np.array([0.35, 0.28, 0.22]))
        cv.fill((row >= y) & (row < y + s), np.full(3, 0.75))
        wire = y - rng.uniform(0.5, 0.8) * size
        cv.fill((row >= wire) & (row < wire + s), np.full(3, 0.15))
        period, x0 = rng.uniform(0.3, 0.5) * size, rng.uniform(0, size)
        cv.fill((row >= wire) & (row < y) & (((cv.x - x0) % period) < s), np.full(3, 0.3))
    else:  # water
        water = row >= y
        blue = hsv(rng.uniform(0.5, 0.65), rng.uniform(0.4, 0.9), rng.uniform(0.3, 0.8))
        cv.fill(water, blue * (1 + 0.15 * np.sin(row * 1.7 + np.sin(cv.x * 0.3) * 2))[..., None])


_GROUND = {"bus": "road", "train": "rails", "boat": "water"}


def _thin_pixels(label, max_width):
    """Bool H x W: pixels whose run of same-class pixels is at most max_width along h, v or a diagonal."""
    h, w = label.shape
    pad = max_width + 1
    big = np.full((h + 2 * pad, w + 2 * pad), -1, np.int64)
    big[pad:-pad, pad:-pad] = label
    thin = np.zeros((h, w), bool)
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        run = np.ones((h, w), np.int64)
        for sign in (1, -1):
            alive = np.ones((h, w), bool)
            for k in range(1, max_width + 1):  # counts capped at max_width per side suffice
                y0, x0 = pad + sign * k * dy, pad + sign * k * dx
                alive &= big[y0:y0 + h, x0:x0 + w] == label
                run += alive
        thin |= run <= max_width
    return thin


def _place(rng, name, scale, size):
    """Centre (cx, cy) px and the ground row (px) of its context, or None for ungrounded classes."""
    cx = rng.uniform(0.2, 0.8) * size
    if name in ("bus", "train"):
        ground = rng.uniform(0.6, 0.95) * size
        return cx, ground - 0.5 * scale, ground
    if name == "boat":
        ground = rng.uniform(0.6, 0.9) * size
        return cx, ground - 0.1 * scale, ground - 0.02 * scale
    return cx, rng.uniform(0.3, 0.7) * size, None


def _compose(rng, primary, size, thin_part_prob, small_object_prob):
    """One image: (uint8 H x W x 3, int64 labels H x W, bool parts H x W, per-image stats dict)."""
    s = max(1, round(size / 64))
    cv = _Canvas(size, s)
    _background(rng, cv)
    _clutter(rng, cv)
    names = [primary]
    if rng.random() < 0.5:  # a second, smaller object behind the primary; often its confusable partner
        partner = _PARTNER.get(primary)
        names.insert(0, partner if partner and rng.random() < 0.5 else _OBJECTS[rng.integers(len(_OBJECTS))])
    plans, grounds = [], {}
    for i, name in enumerate(names):
        scale = rng.uniform(*_SCALE[name]) * size * (1.0 if i == len(names) - 1 else 0.6)
        cx, cy, ground = _place(rng, name, scale, size)
        plans.append((name, scale, cx, cy))
        if ground is not None:
            grounds.setdefault(_GROUND[name], ground)
    for kind in ("road", "rails", "water"):  # context without its object, so context alone is no giveaway
        if kind not in grounds and rng.random() < 0.12:
            grounds[kind] = rng.uniform(0.6, 0.95) * size
    for kind, ground in grounds.items():
        _context(rng, cv, kind, ground)
    for name, scale, cx, cy in plans:
        _draw_object(np.random.default_rng(rng.integers(2**63)), cv, name, scale, cx, cy, thin_part_prob)
    if rng.random() < small_object_prob:
        limit = SMALL_OBJECT_FRACTION * size * size
        for _ in range(1 + int(rng.random() < 0.4)):
            name = _OBJECTS[rng.integers(len(_OBJECTS))]
            scale = rng.uniform(0.1, 0.16) * size * (0.35 if name in ("bus", "train") else 1.0)
            obj_seed = rng.integers(2**63)
            for _attempt in range(8):  # free spot, area under the limit; same seed => same shape
                cx, cy = rng.uniform(0.1, 0.9, 2) * size
                args = (cv, name, scale, cx, cy, thin_part_prob)
                mask = _draw_object(np.random.default_rng(obj_seed), *args, commit=False)
                if mask.sum() >= limit:
                    scale *= 0.8 * math.sqrt(limit / mask.sum())
                elif mask.any() and not (mask & (cv.label > 0)).any():
                    _draw_object(np.random.default_rng(obj_seed), *args)
                    break
    parts = cv.thin & (cv.label > 0) & _thin_pixels(cv.label, 2 * s)
    gain, offset, contrast = rng.uniform(0.8, 1.2, 3), rng.uniform(-0.08, 0.08), rng.uniform(0.8, 1.2)
    img = (cv.image - 0.5) * contrast + 0.5
    img = np.clip(img * gain + offset + rng.normal(0.0, 0.035, img.shape), 0.0, 1.0)
    image = (img * 255 + 0.5).astype(np.uint8)
    area = np.bincount(cv.instance.ravel(), minlength=cv.objects + 1)[1:]
    visible = area > 0
    small = visible & (area < SMALL_OBJECT_FRACTION * size * size)
    stats = {
        "class_pixels": np.bincount(cv.label.ravel(), minlength=NUM_CLASSES),
        "part_pixels": np.bincount(cv.label[parts], minlength=NUM_CLASSES),
        "objects": int(visible.sum()),
        "small_objects": int(small.sum()),
        "small_object_pixels": int(area[small].sum()),
    }
    return image, cv.label, parts, stats


def _save_png(array, path, mode):
    img = Image.frombytes(mode, (array.shape[1], array.shape[0]), np.ascontiguousarray(array).tobytes())
    if mode == "P":
        img.putpalette(_palette_bytes())
    img.save(path, format="PNG", compress_level=6)  # Pillow writes no timestamp: same array => same bytes


def _palette_bytes():
    """The masks' PNG palette: class colours, ignore (255) white, unused entries black."""
    return color_table(PALETTE, fill=0).tobytes()


def _make_one(task):
    """Generate and write image ``index`` of split ``split_no``; returns its stats (picklable)."""
    out, seed, split_no, index, size, thin_part_prob, small_object_prob = task
    rng = np.random.default_rng(np.random.SeedSequence([seed, split_no, index]))
    primary = _OBJECTS[index % len(_OBJECTS)]  # cycling guarantees every class in every split of >= 9 images
    image, label, parts, stats = _compose(rng, primary, size, thin_part_prob, small_object_prob)
    name = f"{SPLITS[split_no]}_{index:05d}"
    _save_png(image, Path(out, "images", name + ".png"), "RGB")
    _save_png(label.astype(np.uint8), Path(out, "masks", name + ".png"), "P")
    _save_png(parts.astype(np.uint8), Path(out, "parts", name + ".png"), "L")
    return stats


def _summarise(per_image, size):
    """Aggregate per-image stats into the JSON block reported for one split."""
    n = len(per_image)
    class_pixels = sum(p["class_pixels"] for p in per_image)
    part_pixels = sum(p["part_pixels"] for p in per_image)
    presence = sum((p["class_pixels"] > 0).astype(np.int64) for p in per_image)
    objects = sum(p["objects"] for p in per_image)
    small = sum(p["small_objects"] for p in per_image)
    object_pixels = int(class_pixels[1:].sum())
    both = {f"{a}+{b}": sum(int(p["class_pixels"][[CLASSES.index(a), CLASSES.index(b)]].all()) for p in per_image)
            for a, b in CONFUSABLE_PAIRS}
    return {
        "images": n,
        "class_pixels": dict(zip(CLASSES, class_pixels.tolist())),
        "class_presence": dict(zip(CLASSES, presence.tolist())),
        "part_pixels": dict(zip(CLASSES, part_pixels.tolist())),
        "thin_part_pixel_share": round(float(part_pixels.sum()) / (n * size * size), 6),
        "thin_part_share_of_object_pixels": round(float(part_pixels.sum()) / max(object_pixels, 1), 6),
        "objects": objects,
        "small_objects": small,
        "small_object_share": round(small / max(objects, 1), 6),
        "images_with_small_object_share": round(sum(p["small_objects"] > 0 for p in per_image) / n, 6),
        "small_object_pixel_share": round(sum(p["small_object_pixels"] for p in per_image) / (n * size * size), 6),
        "pair_cooccurrence_images": both,
    }


def _check_params(size, counts, thin_part_prob, small_object_prob, workers, seed):
    if not isinstance(size, int) or size < 32:
        raise ValueError(f"size={size!r} must be an integer >= 32 (thin parts and small objects need room)")
    for key, value in counts.items():
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{key}={value!r} must be a positive integer")
    for key, value in (("thin_part_prob", thin_part_prob), ("small_object_prob", small_object_prob)):
        if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{key}={value!r} must be a probability in [0, 1]")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r} must be a positive integer")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")


def generate(root, seed=_D["seed"], size=_D["size"], n_train=_D["n_train"], n_val=_D["n_val"],
             n_test=_D["n_test"], thin_part_prob=_D["thin_part_prob"], small_object_prob=_D["small_object_prob"],
             workers=1):
    """Write the dataset to ``root`` and return its stats (the "stats" block of meta.json).

    size: image side in px (>= 32). thin_part_prob: chance that each thin part of an object (leg,
    tail, arm, pole, mast, rim, ...) is drawn. small_object_prob: chance that an image gets 1-2 extra
    objects below 1 % of the image area. Files are written to a temporary sibling directory that is
    renamed to ``root`` when complete. If ``root`` already holds a dataset with the same parameters
    nothing is written; with different parameters a ValueError names them.
    """
    counts = {"n_train": n_train, "n_val": n_val, "n_test": n_test}
    _check_params(size, counts, thin_part_prob, small_object_prob, workers, seed)
    params = {"version": GENERATOR_VERSION, "seed": seed, "size": size, **counts,
              "thin_part_prob": float(thin_part_prob), "small_object_prob": float(small_object_prob)}
    root = Path(root)
    existing = existing_stats(root, params)
    if existing is not None:
        return existing
    tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for sub in ("images", "masks", "parts", "splits"):
            (tmp / sub).mkdir(parents=True)
        tasks = [(str(tmp), seed, k, i, size, float(thin_part_prob), float(small_object_prob))
                 for k, n in enumerate(counts.values()) for i in range(n)]
        if workers == 1:
            per_image = [_make_one(t) for t in tasks]
        else:
            with multiprocessing.get_context().Pool(workers) as pool:
                per_image = pool.map(_make_one, tasks, chunksize=max(1, len(tasks) // (8 * workers)))
        stats, start = {}, 0
        for split, n in zip(SPLITS, counts.values()):
            stats[split] = _summarise(per_image[start:start + n], size)
            (tmp / "splits" / f"{split}.txt").write_text("".join(f"{split}_{i:05d}\n" for i in range(n)))
            start += n
        stats["all"] = _summarise(per_image, size)
        unit = max(1, round(size / 64))
        meta = {"name": "generated", "classes": list(CLASSES), "palette": PALETTE, "ignore_index": IGNORE_INDEX,
                "confusable_pairs": [list(p) for p in CONFUSABLE_PAIRS], "part_width_px": [unit, 2 * unit],
                "small_object_fraction": SMALL_OBJECT_FRACTION, "params": params, "stats": stats}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        os.replace(tmp, root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        existing = existing_stats(root, params)  # a concurrent generator finished first
        if existing is None:
            raise
        return existing
    return stats
