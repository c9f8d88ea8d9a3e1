"""Any timm backbone as a list of stage feature maps (``features_only`` / ``feature_info``).

The backbone returns the stages with reduction >= 4 (a stride-2 stem level is dropped), always
NCHW: channels-last outputs (Swin) are permuted. Exits tap every returned stage but the last; the
decoder head sits on the last.
"""

import difflib
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from srlib.compat import import_timm

OUTPUT_STRIDES = (8, 16, 32)
MIN_REDUCTION = 4  # stages below this stride (the stem) get no exit


class Backbone(nn.Module):
    """A timm ``features_only`` model returning its used stages.

    Attributes: ``channels`` and ``reductions`` (one per used stage, shallowest first) and
    ``output_stride`` (the last stage's reduction).
    forward(images B x 3 x H x W) -> list of B x channels[k] x H/reductions[k] x W/reductions[k].
    """

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body
        info = body.feature_info
        self.indices = [i for i, r in enumerate(info.reduction()) if r >= MIN_REDUCTION]
        if not self.indices:
            raise ValueError(f"backbone has no stage with reduction >= {MIN_REDUCTION}: {info.reduction()}")
        self.channels = [info.channels()[i] for i in self.indices]
        self.reductions = [info.reduction()[i] for i in self.indices]
        self.output_stride = self.reductions[-1]
        # FeatureListNet exposes output_fmt (a str enum); EfficientNetFeatures and friends are always NCHW.
        self.nhwc = getattr(body, "output_fmt", "NCHW") == "NHWC"

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        levels = self.body(images)
        feats = [levels[i] for i in self.indices]
        if self.nhwc:
            feats = [f.permute(0, 3, 1, 2).contiguous() for f in feats]
        return feats


def _check_name(timm, name: str) -> None:
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=8, cutoff=0.6)
        raise ValueError(
            f"unknown backbone {name!r}: not a timm model. Close matches: {close or 'none'}; "
            f"all {len(timm.list_models())} valid names: timm.list_models()"
        )


def _create(timm, name: str, output_stride: int, kwargs: dict) -> nn.Module:
    """timm features model at ``output_stride``, dilating where timm can; ValueError where not."""
    try:
        body = timm.create_model(name, pretrained=False, features_only=True, output_stride=output_stride, **kwargs)
    except TypeError as error:
        if "output_stride" not in str(error):
            raise
        body = timm.create_model(name, pretrained=False, features_only=True, **kwargs)
        native = body.feature_info.reduction()[-1]
        if native != output_stride:
            raise ValueError(
                f"backbone {name!r} cannot run at output_stride={output_stride}: timm cannot dilate it; "
                f"use its native output_stride={native}"
            ) from None
    reached = body.feature_info.reduction()[-1]
    if reached != output_stride:
        raise ValueError(
            f"backbone {name!r} cannot run at output_stride={output_stride}: timm built it at {reached}; "
            f"use output_stride={reached}"
        )
    return body


def build_backbone(
    name: str, output_stride: int = 16, pretrained_path: str | None = None, backbone_kwargs: dict | None = None
) -> Backbone:
    """Build timm model ``name`` as a :class:`Backbone`; never downloads.

    output_stride: 8, 16 or 32 (ResNet / MobileNet / EfficientNet / ConvNeXt dilate to 8 or 16;
    models timm cannot dilate, e.g. Swin, accept only their native stride).
    backbone_kwargs: passed to ``timm.create_model`` (e.g. ``img_size`` for Swin / ViT).
    pretrained_path: a local checkpoint, see :func:`load_backbone_checkpoint`.
    """
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride={output_stride!r} is not one of {OUTPUT_STRIDES}")
    timm = import_timm()
    _check_name(timm, name)
    kwargs = dict(backbone_kwargs or {})
    body = _create(timm, name, output_stride, kwargs)
    if pretrained_path is not None:
        load_backbone_checkpoint(body, name, pretrained_path, kwargs)
    return Backbone(body)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"pretrained checkpoint {str(path)!r} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping):
        raise ValueError(f"pretrained checkpoint {str(path)!r} holds a {type(state).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _original_key(key: str, full_keys: set[str]) -> str | None:
    """Key of the classification model that timm's features model stores as ``key``.

    timm's feature wrappers keep the original names except that FeatureListNet flattens the first
    level of Sequentials (``stages.0`` -> ``stages_0``) and FeatureGetterNet adds ``model.``.
    """
    head, _, rest = key.partition(".")
    candidates = [key, key.removeprefix("model.")]
    candidates += [f"{head[:i]}.{head[i + 1:]}.{rest}" for i, char in enumerate(head) if char == "_"]
    return next((c for c in candidates if c in full_keys), None)


def load_backbone_checkpoint(body: nn.Module, name: str, path: str, kwargs: dict | None = None) -> None:
    """Load a local checkpoint into timm features model ``body`` (in place; no download).

    Accepts a plain state dict or one under ``"state_dict"`` / ``"model"``; a ``module.`` prefix
    (DataParallel) is stripped. Keys may be those of the features model itself or of the full timm
    classification model ``name`` (torchvision ResNet files match timm's ResNet names); keys that only
    the classifier uses (``fc.*``, ``classifier.*``, ``head.*``, ...) are dropped. Any missing,
    unexpected or wrongly shaped key raises ValueError naming the file and the first few keys.
    """
    path = Path(path)
    state = _read_state_dict(path)
    target = body.state_dict()
    with torch.device("meta"):  # key names of the classification model, without allocating it
        full_keys = set(import_timm().create_model(name, pretrained=False, **(kwargs or {})).state_dict())
    to_target = {k: k for k in target}
    to_target.update({orig: k for k in target if (orig := _original_key(k, full_keys)) is not None})
    mapped, unexpected = {}, []
    for key, value in state.items():
        if key in to_target:
            mapped[to_target[key]] = value
        elif key not in full_keys:  # in full_keys but unused by features_only: classifier, dropped
            unexpected.append(key)
    missing = [k for k in target if k not in mapped]
    shapes = [f"{k}: {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in mapped.items() if v.shape != target[k].shape]
    problems = [
        f"{label} ({len(keys)}): {keys[:5]}"
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes))
        if keys
    ]
    if problems:
        raise ValueError(f"pretrained checkpoint {str(path)!r} does not fit backbone {name!r}: " + "; ".join(problems))
    body.load_state_dict(mapped, strict=True)
