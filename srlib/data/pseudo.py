"""CAM-like pseudo masks for the generated dataset (weakly supervised training, ``data.supervision: pseudo``).

``pseudo_mask`` degrades a ground-truth mask the way seeds grown from class activation maps are degraded,
with a strength ``noise`` in [0, 1] (0 = the ground truth itself):

- blobby boundaries: each object's mask is blurred (Gaussian, sigma up to 2.5 px x size/64) and thresholded
  at a per-object level jittered around 0.5 and perturbed by a smooth random field, so objects come out
  dilated or eroded with wavy, rounded outlines; corners and thin parts (1-2 px legs, poles, masts) are washed
  out by the blur;
- missed thin parts: besides the blur, each object loses its thin-part pixels outright with probability
  ``noise``;
- missed small objects: an object below 1 % of the image is dropped (becomes background) with probability
  0.8 ``noise``;
- confusion within the confusable pairs (cat/dog, bus/train): with probability 0.5 ``noise`` an object
  takes its partner's class, on the whole object or on the part beyond a random line through it.

Objects are painted largest first, so small ones stay on top; ignore pixels (255) stay ignored. Each
mask depends only on (ground truth, thin parts, noise, image id): the same labels whatever the run's seed.
``srlib weak-labels`` scores the masks of a whole split against the ground truth (``srlib.data.weak.label_stats``).
The default noise (``srlib.config.DEFAULTS["data"]["pseudo_noise"]``) gives about 65 % mIoU on the
128 px training split, the range of real CAM seeds (60-70 % on PASCAL VOC).
"""

import zlib

import numpy as np
from scipy import ndimage

from srlib.data.common import IGNORE_INDEX
from srlib.data.generated import CLASSES

SMALL_FRACTION = 0.01  # an object below this share of the image is small
_SALT = 0x5EED
_PARTNER = {CLASSES.index(a): CLASSES.index(b) for a, b in
            (("cat", "dog"), ("dog", "cat"), ("bus", "train"), ("train", "bus"))}


def label_rng(name: str, salt: int) -> np.random.Generator:
    """The generator of one image's weak labels: a function of its id only (not of any run seed)."""
    return np.random.default_rng([salt, zlib.crc32(name.encode())])


def objects(mask: np.ndarray):
    """(class id, bool region) of every connected object (8-connected, class ids 1..254), largest first."""
    found = []
    for class_id in np.unique(mask):
        if class_id in (0, IGNORE_INDEX):
            continue
        components, count = ndimage.label(mask == class_id, structure=np.ones((3, 3)))
        found += [(int(class_id), components == i) for i in range(1, count + 1)]
    return sorted(found, key=lambda item: -int(item[1].sum()))


def _smooth_field(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    """Low-frequency noise with unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / max(field.std(), 1e-6)


def _degrade(region: np.ndarray, rng, noise: float, scale: float) -> np.ndarray:
    """One object's region, blurred and re-thresholded: dilated or eroded, with a wavy, rounded outline."""
    blurred = ndimage.gaussian_filter(region.astype(float), 2.5 * noise * scale)
    level = 0.5 + 0.3 * noise * rng.uniform(-1, 1)
    wobble = 0.15 * noise * _smooth_field(rng, region.shape, 3 * scale)
    return blurred > np.clip(level + wobble, 0.05, 0.95)


def _confuse(region: np.ndarray, rng) -> np.ndarray:
    """The part of ``region`` that takes the partner class: all of it, or the side of a random line."""
    if rng.random() < 0.5:
        return region
    ys, xs = np.nonzero(region)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.indices(region.shape)
    side = (xx - xs.mean()) * np.cos(angle) + (yy - ys.mean()) * np.sin(angle) > 0
    return region & side


def pseudo_mask(mask: np.ndarray, parts: np.ndarray, name: str, noise: float) -> np.ndarray:
    """A CAM-like pseudo mask (int64 H x W, class ids, 255 kept) from the ground truth ``mask`` (H x W) and
    its thin-part pixels ``parts`` (bool H x W) of image ``name``; see the module docstring."""
    if not 0 <= noise <= 1:
        raise ValueError(f"pseudo-mask noise must be in [0, 1], got {noise!r}")
    if noise == 0:
        return mask.astype(np.int64, copy=True)
    rng = label_rng(name, _SALT)
    scale = mask.shape[0] / 64
    out = np.where(mask == IGNORE_INDEX, IGNORE_INDEX, 0).astype(np.int64)
    for class_id, region in objects(mask):
        if region.sum() < SMALL_FRACTION * mask.size and rng.random() < 0.8 * noise:
            continue
        if rng.random() < noise:
            region = region & ~parts
        region = _degrade(region, rng, noise, scale) & (mask != IGNORE_INDEX)
        out[region] = class_id
        if class_id in _PARTNER and region.any() and rng.random() < 0.5 * noise:
            out[_confuse(region, rng)] = _PARTNER[class_id]
    return out
