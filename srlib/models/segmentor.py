"""The multi-exit segmentor: timm backbone, exits 1..N-1 on its stages, decoder head as exit N."""

import torch
import torch.nn.functional as F
from torch import nn

from srlib.models.backbone import Backbone, build_backbone
from srlib.models.exits import EXIT_CHANNELS, EXITS, ImageClassifier
from srlib.models.heads import HEADS


def logits_layout(logits: torch.Tensor) -> torch.Tensor:
    """Logits as the segmentor returns them: channels-last in memory on CPU, as they are elsewhere.

    Same values and shape; on CPU the channels-last layout makes the bilinear upsampling, argmax and
    per-pixel cross-entropy that every exit's logits go through faster (official all-SR loss with four
    exits, batch 8, 64 px, 21 classes, one thread: about 45 -> 39 ms forward + backward).
    """
    return logits.contiguous(memory_format=torch.channels_last) if logits.device.type == "cpu" else logits


def upsample(logits: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize (align_corners=False) of B x C x h x w logits to ``size`` (H, W)."""
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


class InferenceModel(nn.Module):
    """Backbone + decoder head only, sharing the segmentor's modules (and so its weights).

    Its state dict is exactly that of the same segmentor built without exits.
    forward(images B x 3 x H x W) -> logits B x C x H x W, bilinearly upsampled to the input.
    """

    def __init__(self, backbone: Backbone, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits, _ = self.head(self.backbone(images)[-1])
        return upsample(logits_layout(logits), images.shape[-2:])


class Segmentor(nn.Module):
    """Multi-exit segmentor. Build it with :func:`build_segmentor`.

    forward(images B x 3 x H x W) -> dict, exits numbered 1..N (exit 1 first, the head last):
      "seg":  N tensors B x C x h_k x w_k at each exit's native resolution ([z_N] without exits);
      "cls":  N tensors B x C of image-level class logits (empty unless ``classify``);
      "feats": N stage features projected to B x D x h_k x w_k (empty unless ``feature_proj_dim``);
      "head_feats": B x F x h_N x w_N, the features entering the head's final 1x1 classifier.
    """

    def __init__(self, backbone: Backbone, head: nn.Module, exits: list[nn.Module],
                 classifiers: list[nn.Module], projections: list[nn.Module]):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.exits = nn.ModuleList(exits)
        self.classifiers = nn.ModuleList(classifiers)
        self.projections = nn.ModuleList(projections)

    def forward(self, images: torch.Tensor) -> dict:
        stages = self.backbone(images)
        tapped = stages[-len(self.exits) - 1:]  # the exits tap the deepest stages below the last, the head the last
        seg = [logits_layout(exit_(stage)) for exit_, stage in zip(self.exits, tapped)]
        logits, head_feats = self.head(tapped[-1])
        seg.append(logits_layout(logits))
        return {
            "seg": seg,
            "cls": [classifier(z) for classifier, z in zip(self.classifiers, seg)],
            "feats": [project(stage) for project, stage in zip(self.projections, tapped)],
            "head_feats": head_feats,
        }

    def inference_model(self) -> InferenceModel:
        """The test-time model: exits, classifiers and projections dropped; weights shared."""
        return InferenceModel(self.backbone, self.head)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """{"backbone": backbone parameters, "head": decoder, exits, classifiers and projections}."""
        backbone = list(self.backbone.parameters())
        ids = {id(p) for p in backbone}
        return {"backbone": backbone, "head": [p for p in self.parameters() if id(p) not in ids]}


def _check_choice(kind: str, value, valid, extra: str = "") -> None:
    if value not in valid:
        raise ValueError(f"unknown {kind} {value!r}; valid: {sorted(valid)}{extra}")


def build_segmentor(
    backbone: str,
    head: str,
    num_classes: int,
    exit_type: str | None = None,
    exit_width: int = EXIT_CHANNELS,
    output_stride: int = 16,
    classify: bool = False,
    feature_proj_dim: int | None = None,
    pretrained: str | None = None,
    backbone_kwargs: dict | None = None,
    min_exit_stride: int = 2,
    frozen_bn: bool = False,
) -> Segmentor:
    """Build a segmentor on timm model ``backbone`` with decoder ``head`` (a key of HEADS).

    exit_type: a key of EXITS or None (the baseline, no exits). exit_width: the official exit's conv width. classify: image-level classifier on
    every exit and on the head. feature_proj_dim: 1x1 conv projection of every tapped stage to that
    width (for the ``paper-features`` variant). pretrained: ``imagenet``, a shipped weights source or a
    local backbone checkpoint (never downloads; see ``build_backbone``). backbone_kwargs: extra
    ``timm.create_model`` arguments (e.g. ``img_size`` for Swin).
    min_exit_stride: exits tap every backbone stage below the last whose stride is at least this.
    2 (default) is the authors' placement: on ResNet-101 the stem after conv1-bn1-relu (stride 2,
    64 channels), then layer1, layer2, layer3; exit 1, SR-F's teacher, is the stem. 4 skips the stem.
    frozen_bn: the backbone's BatchNorm layers keep their (pretrained) statistics in training.
    """
    _check_choice("head", head, HEADS)
    if exit_type is not None:
        _check_choice("exit type", exit_type, EXITS, " or None (no exits)")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r}: need an integer >= 2")
    if feature_proj_dim is not None and feature_proj_dim < 1:
        raise ValueError(f"feature_proj_dim={feature_proj_dim!r}: need a positive width or None")
    body = build_backbone(backbone, output_stride, pretrained, backbone_kwargs, frozen_bn)
    decoder = HEADS[head](body.channels[-1], num_classes, body.output_stride)
    tap_channels = [c for c, r in zip(body.channels[:-1], body.reductions[:-1]) if r >= min_exit_stride]
    exit_channels = tap_channels if exit_type else []
    exits = [EXITS[exit_type](channels, num_classes, exit_width) for channels in exit_channels]
    tapped = [*exit_channels, body.channels[-1]]
    classifiers = [ImageClassifier(num_classes) for _ in tapped] if classify else []
    projections = [nn.Conv2d(channels, feature_proj_dim, 1) for channels in tapped] if feature_proj_dim else []
    return Segmentor(body, decoder, exits, classifiers, projections)
