"""Pixel losses, the loss axis of a sweep: ``PIXEL_LOSSES`` (name -> factory) and ``build_pixel_loss``.

Every factory takes its parameters as keywords plus ``ignore_index`` and returns a callable
``(logits B x C x H x W, target B x H x W) -> scalar``. The center loss is not a pixel loss but a
flag (``loss.center``): ``srlib.losses.center.CenterLoss`` on the head features, added to any pixel
loss. The Self-Regulation terms live in ``srlib.losses.self_regulation``.
"""

import inspect

from srlib.losses.cross_entropy import make_cross_entropy
from srlib.losses.focal import make_focal_loss
from srlib.losses.locally_adaptive import make_locally_adaptive_loss

PIXEL_LOSSES = {
    "ce": make_cross_entropy,
    "focal": make_focal_loss,
    "lal": make_locally_adaptive_loss,
}


def build_pixel_loss(name: str, ignore_index: int = 255, **params):
    """The pixel loss ``name`` with ``params``; ValueError names an unknown loss or parameter
    (listing the valid ones) and bad values."""
    if name not in PIXEL_LOSSES:
        hint = " (the center loss is the flag loss.center, added to any pixel loss)" if "center" in name else ""
        raise ValueError(f"unknown pixel loss {name!r}; valid names: {', '.join(PIXEL_LOSSES)}{hint}")
    factory = PIXEL_LOSSES[name]
    accepted = [p for p in inspect.signature(factory).parameters if p != "ignore_index"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"pixel loss {name!r} got unknown parameter(s) {unknown}; valid: {accepted or 'none'}")
    return factory(ignore_index=ignore_index, **params)
