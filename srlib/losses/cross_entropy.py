"""Pixel cross-entropy: the baseline loss of every cell, as a ``PIXEL_LOSSES`` entry."""

import functools

import torch.nn.functional as F
from torch import Tensor

from srlib.config import IGNORE_INDEX


def cross_entropy(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Mean CE over valid pixels of ``logits`` (B x C x H x W) against ``target`` (B x H x W);
    0 (not NaN) when every pixel is ``ignore_index``."""
    total = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
    return total / (target != ignore_index).sum().clamp_min(1)


def make_cross_entropy(ignore_index: int = IGNORE_INDEX):
    """Factory for the ``"ce"`` registry entry."""
    return functools.partial(cross_entropy, ignore_index=ignore_index)
