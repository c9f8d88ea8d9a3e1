"""Focal loss (Lin et al., ICCV 2017) for pixels, the counterpart the LAL paper compares with.

``FL_p = -alpha (1 - p_t)^gamma log p_t``, p_t = softmax probability of the true class at pixel
p, averaged over valid pixels. Multi-class alpha: one constant factor on every class term (as
the LAL paper's alpha = 0.25 setting), not a per-class weight; so gamma = 0 with alpha = 1 is
exactly cross-entropy, and alpha only rescales the loss (equivalently the learning rate).
"""

import functools
import math

import torch
from torch import Tensor

from srlib.config import DEFAULTS, IGNORE_INDEX

DEFAULT_ALPHA, DEFAULT_GAMMA = DEFAULTS["loss"]["focal"]["alpha"], DEFAULTS["loss"]["focal"]["gamma"]


def check_params(alpha: float, gamma: float) -> None:
    """Raise ValueError naming alpha outside [0, 1] or gamma < 0 (or either not a finite number)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"focal alpha must be a number in [0, 1], got {alpha!r}")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not math.isfinite(gamma) or gamma < 0:
        raise ValueError(f"focal gamma must be a finite number >= 0, got {gamma!r}")


def focal_loss(
    logits: Tensor, target: Tensor, alpha: float = DEFAULT_ALPHA, gamma: float = DEFAULT_GAMMA,
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """Mean focal loss over valid pixels of ``logits`` (B x C x H x W) against ``target``
    (B x H x W); 0 when every pixel is ``ignore_index``."""
    valid = target != ignore_index
    log_p = torch.log_softmax(logits, 1).gather(1, torch.where(valid, target.long(), 0)[:, None]).squeeze(1)
    weight = alpha if gamma == 0 else alpha * (1 - log_p.exp()).clamp_min(0).pow(gamma)
    return -(weight * log_p * valid).sum() / valid.sum().clamp_min(1)


def make_focal_loss(alpha: float = DEFAULT_ALPHA, gamma: float = DEFAULT_GAMMA, ignore_index: int = IGNORE_INDEX):
    """Factory for the ``"focal"`` registry entry: validated ``(logits, target) -> scalar``."""
    check_params(alpha, gamma)
    return functools.partial(focal_loss, alpha=alpha, gamma=gamma, ignore_index=ignore_index)
