"""Decoder heads: the baseline's own exit N, registered in ``HEADS``.

A head with ``multi_stage = False`` maps the last backbone stage (B x in_channels x h x w) to ``(logits,
head_feats)``: logits B x num_classes x h x w at the stage's resolution, head_feats the features that enter the
head's final 1x1 classifier; ``HEADS[name](in_channels, num_classes, output_stride)``. It may return a third
item, a dict of extra outputs: the OCR head's auxiliary soft-region logits (``srlib.models.ocr``).
A head with ``multi_stage = True`` (the U-shape decoders of ``srlib.models.ushape``) reads every stage;
``HEADS[name](channels, reductions, num_classes, output_stride)``, see that module.
"""

import torch
import torch.nn.functional as F
from torch import nn

from srlib.models.layers import conv_bn_relu
from srlib.models.ocr import OCRHead
from srlib.models.ushape import FPNHead, UNetHead

ASPP_CHANNELS = 256


class FCNHead(nn.Module):
    """torchvision's FCNHead: 3x3 conv to in/4 channels, BN, ReLU, dropout 0.1, 1x1 classifier.

    head_feats: the ReLU output (B x in/4 x h x w), taken before dropout.
    """

    multi_stage = False

    def __init__(self, in_channels: int, num_classes: int, output_stride: int):
        super().__init__()
        self.body = conv_bn_relu(in_channels, in_channels // 4)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Conv2d(in_channels // 4, num_classes, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.body(x)
        return self.classifier(self.dropout(feats)), feats


class DeepLabV2Head(nn.Module):
    """DeepLab-v2 ASPP: four 3x3 convs with dilation 6/12/18/24 straight to classes, summed.

    The rates are DeepLab-v2's at output stride 8 and are used as they are at any stride.
    This head has no layer before its classifiers, so head_feats is its input, the last backbone
    stage (B x in_channels x h x w).
    """

    multi_stage = False
    RATES = (6, 12, 18, 24)

    def __init__(self, in_channels: int, num_classes: int, output_stride: int):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=rate, dilation=rate) for rate in self.RATES
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return sum(branch(x) for branch in self.branches), x


class ASPPPooling(nn.Module):
    """Image-level branch: global average pool, 1x1 conv-BN-ReLU, broadcast back to h x w."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.body = conv_bn_relu(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.body(F.adaptive_avg_pool2d(x, 1))
        return pooled.expand(-1, -1, *x.shape[-2:])


class DeepLabV3Head(nn.Module):
    """DeepLab-v3 (torchvision's DeepLabHead): ASPP then 3x3 conv-BN-ReLU and a 1x1 classifier.

    ASPP: a 1x1 branch, three 3x3 branches with dilation 6/12/18 at output stride 16 (scaled by
    16 / output_stride: 12/24/36 at 8) and image pooling, 256 channels each, concatenated, projected
    by 1x1 conv-BN-ReLU to 256 with dropout 0.5. head_feats: the 3x3 conv-BN-ReLU output
    (B x 256 x h x w).
    Needs batch > 1 in training mode (BatchNorm after the 1 x 1 pooled map).
    """

    multi_stage = False
    RATES_AT_16 = (6, 12, 18)

    def __init__(self, in_channels: int, num_classes: int, output_stride: int):
        super().__init__()
        rates = [max(1, rate * 16 // output_stride) for rate in self.RATES_AT_16]
        self.branches = nn.ModuleList(
            [conv_bn_relu(in_channels, ASPP_CHANNELS, kernel_size=1)]
            + [conv_bn_relu(in_channels, ASPP_CHANNELS, dilation=rate) for rate in rates]
            + [ASPPPooling(in_channels, ASPP_CHANNELS)]
        )
        self.project = nn.Sequential(
            conv_bn_relu(len(self.branches) * ASPP_CHANNELS, ASPP_CHANNELS, kernel_size=1), nn.Dropout(0.5)
        )
        self.body = conv_bn_relu(ASPP_CHANNELS, ASPP_CHANNELS)
        self.classifier = nn.Conv2d(ASPP_CHANNELS, num_classes, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        aspp = self.project(torch.cat([branch(x) for branch in self.branches], dim=1))
        feats = self.body(aspp)
        return self.classifier(feats), feats


HEADS = {"fcn": FCNHead, "deeplabv2": DeepLabV2Head, "deeplabv3": DeepLabV3Head, "ocr": OCRHead,
         "unet": UNetHead, "fpn": FPNHead}
