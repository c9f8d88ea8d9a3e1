"""Joint image / mask (/ part-mask) transforms: training augmentation and full-resolution evaluation.

A transform is ``transform(image, mask, parts) -> (image, mask, parts)`` taking uint8 H x W x 3, int64 H x W and
bool H x W (or None) numpy arrays and returning a normalised FloatTensor 3 x h x w, a LongTensor h x w
(255 = ignore) and a BoolTensor h x w (or None). Geometry is applied identically to all three: the image is
resized bilinearly, the masks by nearest neighbour ("nearest-exact", so they stay aligned with the image).

Random draws come from torch's global generator, so torch's per-worker seeding of DataLoader workers (and
``srlib.data.stream``'s per-sample seeding) makes augmentation reproducible. Factories return
``functools.partial`` objects, which pickle into worker processes.
"""

import functools

import numpy as np
import torch
import torch.nn.functional as F

from srlib.data.common import IGNORE_INDEX

MEAN = (0.485, 0.456, 0.406)  # ImageNet, RGB, on [0, 1] images
STD = (0.229, 0.224, 0.225)


def _to_tensors(image: np.ndarray, mask: np.ndarray, parts):
    """Unnormalised float image 3 x H x W in [0, 1], long mask, bool parts (or None)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != mask.shape:
        raise ValueError(f"expected image H x W x 3 and mask H x W of one size, got {image.shape} and {mask.shape}")
    def tensor(array, dtype):  # np.require copies only read-only or non-contiguous arrays
        return torch.from_numpy(np.require(array, dtype=dtype, requirements=("C", "W")))

    parts = None if parts is None else tensor(parts, bool)
    return tensor(image, np.uint8).permute(2, 0, 1).float().div_(255), tensor(mask, np.int64), parts


def normalize(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] image 3 x H x W -> ImageNet-standardised image."""
    return (image - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


def rgb255(images: torch.Tensor) -> torch.Tensor:
    """Normalised images (... x 3 x H x W, any device) -> float RGB in 0..255, same shape and device, detached
    (what the DenseCRF loss's colour kernel compares; padding comes back as the ImageNet mean colour)."""
    std = torch.tensor(STD, device=images.device).view(3, 1, 1)
    mean = torch.tensor(MEAN, device=images.device).view(3, 1, 1)
    return (images.detach().float() * std + mean) * 255


def denormalize(image: torch.Tensor) -> np.ndarray:
    """Normalised image 3 x H x W (any device) -> uint8 H x W x 3 numpy, for pictures."""
    rgb = rgb255(image.cpu())
    return rgb.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _resize_label(label: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of an integer or bool map H x W."""
    resized = F.interpolate(label[None, None].float(), size=size, mode="nearest-exact")[0, 0]
    return resized.to(label.dtype)


def _eval(image, mask, parts):
    image, mask, parts = _to_tensors(image, mask, parts)
    return normalize(image), mask, parts


def _train(image, mask, parts, *, crop: tuple[int, int], scale_range: tuple[float, float], flip: bool):
    image, mask, parts = _to_tensors(image, mask, parts)
    low, high = scale_range
    scale = low + (high - low) * torch.rand(()).item()
    size = (max(1, round(mask.shape[0] * scale)), max(1, round(mask.shape[1] * scale)))
    if size != tuple(mask.shape):
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        mask = _resize_label(mask, size)
        parts = None if parts is None else _resize_label(parts, size)
    image = normalize(image)
    # Pad bottom / right up to the crop: image with 0 (= the mean after normalising), masks with ignore / False.
    pad = (0, max(crop[1] - size[1], 0), 0, max(crop[0] - size[0], 0))
    if any(pad):
        image = F.pad(image, pad, value=0.0)
        mask = F.pad(mask, pad, value=IGNORE_INDEX)
        parts = None if parts is None else F.pad(parts, pad, value=False)
    top = torch.randint(0, mask.shape[0] - crop[0] + 1, ()).item()
    left = torch.randint(0, mask.shape[1] - crop[1] + 1, ()).item()
    window = (slice(top, top + crop[0]), slice(left, left + crop[1]))
    image, mask = image[(slice(None), *window)], mask[window]
    parts = None if parts is None else parts[window]
    if flip and torch.rand(()).item() < 0.5:
        image, mask = image.flip(-1), mask.flip(-1)
        parts = None if parts is None else parts.flip(-1)
    return image.contiguous(), mask.contiguous(), None if parts is None else parts.contiguous()


def train_transform(crop_size, scale_range=(0.5, 2.0), flip: bool = True):
    """Random scale in ``scale_range`` (factor of the side), pad to ``crop_size`` (int or (h, w), pixels) with
    ignore, random crop, random horizontal flip (p = 0.5), normalise."""
    crop = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
    if len(crop) != 2 or min(crop) < 1:
        raise ValueError(f"crop_size must be a positive int or (h, w), got {crop_size!r}")
    low, high = scale_range
    if not 0 < low <= high:
        raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range!r}")
    return functools.partial(_train, crop=crop, scale_range=(float(low), float(high)), flip=bool(flip))


def eval_transform():
    """Full resolution: to tensors and normalise."""
    return _eval
