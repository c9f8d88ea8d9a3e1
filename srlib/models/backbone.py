"""Any timm backbone as a list of stage feature maps (``features_only`` / ``feature_info``).

The backbone returns every stage timm's ``feature_info`` lists (on ResNet: the stride-2 stem after
conv1-bn1-relu, then layer1..layer4), always NCHW: channels-last outputs (Swin) are permuted. The
segmentor's exits tap stages below the last (see ``build_segmentor``'s ``min_exit_stride``); the
decoder head sits on the last.
"""

import difflib
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from srlib.compat import import_timm
from srlib.models.pretrained import IMAGENET_NORM, SOURCES, load_source, source_for

OUTPUT_STRIDES = (8, 16, 32)


class Backbone(nn.Module):
    """A timm ``features_only`` model returning all its stages.

    Attributes: ``channels`` and ``reductions`` (one per stage, shallowest first) and
    ``output_stride`` (the last stage's reduction).
    forward(images B x 3 x H x W, ImageNet-standardised) -> list of
    B x channels[k] x H/reductions[k] x W/reductions[k].

    ``input_norm`` (mean, std), when given, is the normalisation the weights were trained with; images
    arrive ImageNet-standardised (``srlib.data.transforms``) and are re-standardised to it first
    (an elementwise affine, the same in every model built on these weights).
    ``frozen_bn``: the backbone's BatchNorm layers stay in eval mode (running statistics from the
    pretrained weights; their affine parameters still train), as the authors' ``trainval.py`` trains
    with ``net.eval()``.
    """

    def __init__(self, body: nn.Module, input_norm: tuple | None = None, frozen_bn: bool = False):
        super().__init__()
        self.body = body
        self.frozen_bn = frozen_bn
        info = body.feature_info
        self.channels = list(info.channels())
        self.reductions = list(info.reduction())
        self.output_stride = self.reductions[-1]
        # FeatureListNet exposes output_fmt (a str enum); EfficientNetFeatures and friends are always NCHW.
        self.nhwc = getattr(body, "output_fmt", "NCHW") == "NHWC"
        scale = shift = None
        if input_norm is not None and tuple(map(tuple, input_norm)) != IMAGENET_NORM:
            mean, std = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) for v in input_norm)
            # x_source = (x * std_in + mean_in - mean) / std = x * scale + shift
            imagenet_mean, imagenet_std = (torch.tensor(v).view(1, 3, 1, 1) for v in IMAGENET_NORM)
            scale = imagenet_std / std
            shift = (imagenet_mean - mean) / std
        # Not persistent: the state dict stays that of the timm model; the affine is rebuilt from the source.
        self.register_buffer("input_scale", scale, persistent=False)
        self.register_buffer("input_shift", shift, persistent=False)
        self.train()  # applies frozen_bn from the start

    def train(self, mode: bool = True) -> "Backbone":
        super().train(mode)
        if self.frozen_bn:
            for module in self.body.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        if self.input_scale is not None:
            images = torch.addcmul(self.input_shift.to(images.dtype), images, self.input_scale.to(images.dtype))
        feats = self.body(images)
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
            raise ValueError(f"backbone {name!r} with model.backbone_kwargs {kwargs}: {error}") from None
        try:
            body = timm.create_model(name, pretrained=False, features_only=True, **kwargs)
        except TypeError as error:
            raise ValueError(f"backbone {name!r} with model.backbone_kwargs {kwargs}: {error}") from None
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
    name: str, output_stride: int = 16, pretrained: str | None = None, backbone_kwargs: dict | None = None,
    frozen_bn: bool = False,
) -> Backbone:
    """Build timm model ``name`` as a :class:`Backbone`; never downloads.

    output_stride: 8, 16 or 32 (ResNet / MobileNet / EfficientNet / ConvNeXt dilate to 8 or 16;
    models timm cannot dilate, e.g. Swin, accept only their native stride).
    backbone_kwargs: passed to ``timm.create_model`` (e.g. ``img_size`` for Swin / ViT).
    pretrained: ``imagenet``, a source of ``srlib.models.pretrained.SOURCES`` (weights an installed
    package ships, with their input normalisation) or a local checkpoint (see :func:`load_backbone_checkpoint`).
    frozen_bn: keep the backbone's BatchNorm statistics fixed in training (see :class:`Backbone`).
    """
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride={output_stride!r} is not one of {OUTPUT_STRIDES}")
    timm = import_timm()
    _check_name(timm, name)
    kwargs = dict(backbone_kwargs or {})
    body = _create(timm, name, output_stride, kwargs)
    norm = None
    if pretrained is not None:
        source = source_for(pretrained, name)
        if source is None:
            load_backbone_checkpoint(body, name, pretrained, kwargs)
        else:
            full_keys = _full_keys(name, kwargs)
            _fit_state_dict(body, name, load_source(source, sorted(full_keys)), full_keys,
                            f"model.pretrained: {source!r}")
            norm = SOURCES[source]["norm"]
    return Backbone(body, norm, frozen_bn)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"pretrained checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError) as error:  # not a checkpoint, or one holding objects
        # torch names an object weights_only refuses ("Unsupported global: ..."); keep that line, not its advice
        detail = next((line.strip() for line in str(error).splitlines() if "Unsupported global" in line), "")
        raise ValueError(f"pretrained checkpoint {str(path)!r} is not a state dict torch.load can read with "
                         f"weights_only=True ({type(error).__name__}{': ' + detail if detail else ''})") from None
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


def _full_keys(name: str, kwargs: dict | None) -> set[str]:
    """State-dict keys of timm's classification model ``name``, without allocating it."""
    with torch.device("meta"):
        return set(import_timm().create_model(name, pretrained=False, **(kwargs or {})).state_dict())


def load_backbone_checkpoint(body: nn.Module, name: str, path: str, kwargs: dict | None = None) -> None:
    """Load a local checkpoint into timm features model ``body`` (in place; no download).

    Accepts a plain state dict or one under ``"state_dict"`` / ``"model"``; a ``module.`` prefix
    (DataParallel) is stripped. Keys may be those of the features model itself or of the full timm
    classification model ``name`` (torchvision ResNet files match timm's ResNet names); keys that only
    the classifier uses (``fc.*``, ``classifier.*``, ``head.*``, ...) are dropped. Any missing,
    unexpected or wrongly shaped key raises ValueError naming the file and the first few keys.
    """
    label = f"pretrained checkpoint {str(path)!r}"
    _fit_state_dict(body, name, _read_state_dict(Path(path)), _full_keys(name, kwargs), label)


def _fit_state_dict(body: nn.Module, name: str, state: dict, full_keys: set[str], label: str) -> None:
    """Load ``state`` (features-model or full-model keys) strictly into ``body``; ValueError naming ``label``."""
    target = body.state_dict()
    to_target = {k: k for k in target}
    to_target.update({orig: k for k in target if (orig := _original_key(k, full_keys)) is not None})
    mapped, unexpected = {}, []
    for key, value in state.items():
        if key in to_target:
            mapped[to_target[key]] = value
        elif key not in full_keys:  # in full_keys but unused by features_only: classifier, dropped
            unexpected.append(key)
    missing = [k for k in target if k not in mapped]
    shapes = [f"{k}: {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in mapped.items()
              if v.shape != target[k].shape]
    problems = [
        f"{kind} ({len(keys)}): {keys[:5]}"
        for kind, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes))
        if keys
    ]
    if problems:
        raise ValueError(f"{label} does not fit backbone {name!r}: " + "; ".join(problems))
    body.load_state_dict(mapped, strict=True)
