"""The multi-exit segmentor: timm backbone, exits 1..N-1 on its stages (and on a U-shape decoder's blocks),
decoder head as exit N."""

import torch
import torch.nn.functional as F
from torch import nn

from srlib.models.backbone import Backbone, build_backbone
from srlib.models.exits import EXIT_CHANNELS, EXITS, ImageClassifier
from srlib.models.heads import HEADS
from srlib.wiring import plain_wiring, ushape_wiring


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


def head_outputs(head: nn.Module, stages: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """``(logits, head_feats, extras)`` of any head of ``HEADS``: a multi-stage head reads every stage, the others
    the last; extras: {"blocks": [...]} (U-shape decoder blocks), {"aux": {...}} (OCR), else {}."""
    logits, feats, *extras = head(stages if head.multi_stage else stages[-1])
    return logits, feats, extras[0] if extras else {}


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
        logits, _, _ = head_outputs(self.head, self.backbone(images))
        return upsample(logits_layout(logits), images.shape[-2:])


class Segmentor(nn.Module):
    """Multi-exit segmentor. Build it with :func:`build_segmentor`.

    forward(images B x 3 x H x W) -> dict, exits numbered 1..N (exit 1 first, the head last):
      "seg":  N tensors B x C x h_k x w_k at each exit's native resolution ([z_N] without exits);
      "cls":  N tensors B x C of image-level class logits (empty unless ``classify``);
      "feats": N tapped features projected to B x D x h_k x w_k (empty unless ``feature_proj_dim``);
      "head_feats": B x F x h_N x w_N, the features entering the head's final 1x1 classifier;
      "wiring": which exit teaches which (``srlib.wiring``), only with exits;
      "aux": the OCR head's {"seg": soft-region logits B x C x h_N x w_N, "weight": loss weight}, only with it.
    Exits 1..N-1 tap ``exit_stages`` (backbone stage indices), then, on a U-shape head, its decoder blocks
    below the final one (deepest first); the head's projection reads the last stage (a plain head) or its
    final decoder block (U-shape).
    """

    def __init__(self, backbone: Backbone, head: nn.Module, exits: list[nn.Module], classifiers: list[nn.Module],
                 projections: list[nn.Module], exit_stages: list[int], wiring: dict | None):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.exits = nn.ModuleList(exits)
        self.classifiers = nn.ModuleList(classifiers)
        self.projections = nn.ModuleList(projections)
        self.exit_stages = exit_stages
        self.wiring = wiring

    def forward(self, images: torch.Tensor) -> dict:
        stages = self.backbone(images)
        tapped = [stages[i] for i in self.exit_stages]
        seg = [logits_layout(exit_(x)) for exit_, x in zip(self.exits, tapped)]
        logits, head_feats, extras = head_outputs(self.head, stages)
        blocks = extras.get("blocks", []) if self.exits else []  # a U-shape decoder's blocks have exits too
        seg += [logits_layout(exit_(x)) for exit_, x in zip(self.exits[len(tapped):], blocks)]
        seg.append(logits_layout(logits))
        tapped += [*blocks, head_feats if self.head.multi_stage else stages[-1]]
        out = {
            "seg": seg,
            "cls": [classifier(z) for classifier, z in zip(self.classifiers, seg)],
            "feats": [project(x) for project, x in zip(self.projections, tapped)],
            "head_feats": head_feats,
        }
        if self.wiring is not None:
            out["wiring"] = self.wiring
        if "aux" in extras:
            out["aux"] = extras["aux"]
        return out

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


def _check_segmentor_args(head: str, exit_type: str | None, num_classes: int, feature_proj_dim: int | None,
                          reaches: bool) -> None:
    """ValueError naming a head or exit type the registries lack, a bad class count or projection width, or an SR
    wiring option (``reaches``: srf_reaches_decoder or srl_reaches_encoder) on a head without decoder blocks."""
    _check_choice("head", head, HEADS)
    if exit_type is not None:
        _check_choice("exit type", exit_type, EXITS, " or None (no exits)")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r}: need an integer >= 2")
    if feature_proj_dim is not None and feature_proj_dim < 1:
        raise ValueError(f"feature_proj_dim={feature_proj_dim!r}: need a positive width or None")
    if reaches and not HEADS[head].multi_stage:
        ushape = sorted(name for name, cls in HEADS.items() if cls.multi_stage)
        raise ValueError(f"srf_reaches_decoder / srl_reaches_encoder need a U-shape head {ushape}: "
                         f"head {head!r} has no decoder blocks")


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
    srf_reaches_decoder: bool = False,
    srl_reaches_encoder: bool = False,
) -> Segmentor:
    """Build a segmentor on timm model ``backbone`` with decoder ``head`` (a key of HEADS).

    exit_type: a key of EXITS or None (the baseline, no exits). exit_width: the official exit's conv width.
    classify: image-level classifier on every exit and on the head. feature_proj_dim: 1x1 conv projection of
    every tapped stage to that width (for the ``paper-features`` variant). pretrained: ``imagenet``, a shipped
    weights source or a local backbone checkpoint (never downloads; see ``build_backbone``). backbone_kwargs:
    extra ``timm.create_model`` arguments (e.g. ``img_size`` for Swin).
    min_exit_stride: exits tap every backbone stage below the last whose stride is at least this.
    2 (default) is the authors' placement: on ResNet-101 the stem after conv1-bn1-relu (stride 2,
    64 channels), then layer1, layer2, layer3; exit 1, SR-F's teacher, is the stem. 4 skips the stem.
    A U-shape head (unet, fpn) gets exits on every encoder stage of at least that stride, the last included
    (it is an encoder block, not the head's input), and on each of its decoder blocks below the final one.
    frozen_bn: the backbone's BatchNorm layers keep their (pretrained) statistics in training.
    srf_reaches_decoder, srl_reaches_encoder: U-shape wiring options (``srlib.wiring.ushape_wiring``).
    """
    _check_segmentor_args(head, exit_type, num_classes, feature_proj_dim, srf_reaches_decoder or srl_reaches_encoder)
    head_cls = HEADS[head]
    body = build_backbone(backbone, output_stride, pretrained, backbone_kwargs, frozen_bn)
    if head_cls.multi_stage:
        decoder = head_cls(body.channels, body.reductions, num_classes, body.output_stride)
        encoder_taps, blocks, head_tap = len(body.channels), decoder.block_channels, decoder.feat_channels
    else:
        decoder = head_cls(body.channels[-1], num_classes, body.output_stride)
        encoder_taps, blocks, head_tap = len(body.channels) - 1, [], body.channels[-1]
    exit_stages = [i for i in range(encoder_taps) if body.reductions[i] >= min_exit_stride] if exit_type else []
    exit_channels = [body.channels[i] for i in exit_stages] + (blocks if exit_type else [])
    exits = [EXITS[exit_type](channels, num_classes, exit_width) for channels in exit_channels]
    tapped = [*exit_channels, head_tap]
    classifiers = [ImageClassifier(num_classes) for _ in tapped] if classify else []
    projections = [nn.Conv2d(channels, feature_proj_dim, 1) for channels in tapped] if feature_proj_dim else []
    if not exit_type:
        wiring = None
    elif head_cls.multi_stage:
        wiring = ushape_wiring(len(exit_stages), len(blocks), srf_reaches_decoder=srf_reaches_decoder,
                               srl_reaches_encoder=srl_reaches_encoder)
    else:
        wiring = plain_wiring(len(exits) + 1)
    return Segmentor(body, decoder, exits, classifiers, projections, exit_stages, wiring)
