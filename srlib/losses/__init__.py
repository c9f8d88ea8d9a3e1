"""A run's training loss (``RunLoss``) and the pixel losses, the loss axis of a sweep: ``PIXEL_LOSSES``
(name -> factory) and ``build_pixel_loss``.

Every factory takes its parameters as keywords plus ``ignore_index`` and returns a callable
``(logits B x C x H x W, target B x H x W) -> scalar``; a loss's parameters come from the run config's
``loss.<name>`` section when it has one (``loss.focal``, ``loss.lal``), else they keep the factory's
defaults. Adding a pixel loss = one module with its factory and one ``PIXEL_LOSSES`` entry.

An auxiliary classifier of the model (the OCR head's soft object regions, ``out["aux"]``) is trained by the same
pixel loss, with the weight the model gives (OCRNet's 0.4), in every cell: it is part of the baseline.

The center loss is not a pixel loss but a flag (``loss.center``): ``srlib.losses.center.CenterLoss``
on the head features, added to any pixel loss. The regularizer (``loss.regularizer``: densecrf or dfr,
parameters ``loss.rloss``) adds ``srlib.losses.dense_crf``'s loss on the head's output, for weak labels.
The Self-Regulation terms live in ``srlib.losses.self_regulation``.
"""

import inspect

import torch
from torch import Tensor

from srlib.config import IGNORE_INDEX, PIXEL_LOSS_NAMES
from srlib.data.transforms import rgb255
from srlib.losses.center import CenterLoss
from srlib.losses.cross_entropy import cross_entropy, make_cross_entropy
from srlib.losses.dense_crf import densecrf_loss
from srlib.losses.focal import make_focal_loss
from srlib.losses.locally_adaptive import make_locally_adaptive_loss
from srlib.losses.pixel_ops import resize_bilinear
from srlib.losses.self_regulation import model_needs, self_regulation_loss

# name -> factory: the names of srlib.config.PIXEL_LOSS_NAMES (ce, focal, lal), each with its factory
PIXEL_LOSSES = dict(zip(PIXEL_LOSS_NAMES, (make_cross_entropy, make_focal_loss, make_locally_adaptive_loss),
                        strict=True))


def build_pixel_loss(name: str, ignore_index: int = IGNORE_INDEX, **params):
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


class RunLoss:
    """The training loss of one run, built from its config's ``loss`` section (keys: ``srlib.config.DEFAULTS``).

    The pixel loss ``loss.pixel`` supervises the head and, under MEA, every exit; MEA, SR-F and SR-L are
    ``srlib.losses.self_regulation``'s terms; ``loss.center`` adds the center loss on the head's features.
    ``needs`` says which model parts the active terms read ({"exits", "classify", "feature_proj"}, see
    ``self_regulation.model_needs``): build the model with them. ``info`` is the dataset's
    ``srlib.data.dataset_info`` (class count; whether class 0 is background).
    """

    def __init__(self, loss: dict, info: dict):
        self.cfg = loss
        self.num_classes = info["num_classes"]
        self.has_background = info["background_index"] == 0
        name = loss["pixel"]
        # Plain CE is self_regulation_loss's own default (None), which shares log-softmaxes with SR-F.
        self.pixel = None if name == "ce" else build_pixel_loss(name, **loss.get(name, {}))
        self.needs = model_needs(mea=loss["mea"], srf=loss["srf"], srl=loss["srl"], variant=loss["variant"])
        self.center = None  # CenterLoss, created at the first step once the head's width is known

    def __call__(self, out: dict, target: Tensor, sr_on: bool = True,
                 images: Tensor | None = None) -> dict[str, Tensor]:
        """Loss terms of one batch (``Segmentor.forward``'s dict, target B x H x W): the active ones among
        "seg", "cls", "srf", "srl", "aux" (a model with an auxiliary classifier), "center", "rloss", and their
        weighted "total". ``sr_on=False`` (SR warm-up) leaves SR-F and SR-L out. ``images``: the normalised input
        batch B x 3 x H x W, which the regularizer (``loss.regularizer``) needs."""
        loss = self.cfg
        terms = self_regulation_loss(
            out, target, mea=loss["mea"], srf=loss["srf"] and sr_on, srl=loss["srl"] and sr_on,
            variant=loss["variant"], num_classes=self.num_classes, w_seg=loss["w_seg"], w_cls=loss["w_cls"],
            w_srf=loss["w_srf"], w_srl=loss["w_srl"], tau=loss["tau"], feature_norm=loss["feature_norm"],
            pixel_loss=self.pixel,
            has_background=self.has_background,
        )
        if "aux" in out:
            terms["aux"] = self._auxiliary(out["aux"]["seg"], target)
            terms["total"] = terms["total"] + out["aux"]["weight"] * terms["aux"]
        if loss["center"]:
            features = out["head_feats"]
            if self.center is None:
                self.center = self._center_loss(features.shape[1], features.device)
            terms["center"] = self.center(features.float(), target)
            terms["total"] = terms["total"] + loss["w_center"] * terms["center"]
        if loss.get("regularizer"):
            terms["rloss"] = self._regularizer(out, images)
            terms["total"] = terms["total"] + loss["rloss"]["weight"] * terms["rloss"]
        return terms

    def _auxiliary(self, logits: Tensor, target: Tensor) -> Tensor:
        """The run's pixel loss of an auxiliary classifier's logits, upsampled to the label size, in float32."""
        with torch.autocast(logits.device.type, enabled=False):
            return (self.pixel or cross_entropy)(resize_bilinear(logits.float(), target.shape[-2:]), target)

    def _regularizer(self, out: dict, images: Tensor | None) -> Tensor:
        """DenseCRF (or DFR) loss of the head's logits; the colour kernel reads the un-normalised 0..255 image."""
        if images is None:
            raise ValueError(f"loss.regularizer {self.cfg['regularizer']!r} needs the batch's images: pass images=")
        params = {key: value for key, value in self.cfg["rloss"].items() if key != "weight"}
        feats = out["head_feats"] if self.cfg["regularizer"] == "dfr" else None  # sigma_feat, feat_dims unused else
        return densecrf_loss(out["seg"][-1], rgb255(images), feats=feats, **params)

    def _center_loss(self, feat_dim: int, device) -> CenterLoss:
        return CenterLoss(self.num_classes, feat_dim, alpha=self.cfg["center_alpha"]).to(device)

    def state_dict(self) -> dict | None:
        """What a checkpoint keeps: the center loss's centres once it exists, else None."""
        return None if self.center is None else self.center.state_dict()

    def load_state_dict(self, state: dict | None, device) -> None:
        """Restore ``state_dict()``'s output (None: nothing to restore)."""
        if state is not None:
            self.center = self._center_loss(state["centers"].shape[1], device)
            self.center.load_state_dict(state)
