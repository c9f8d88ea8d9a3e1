"""U-shape decoders on every backbone stage: ``unet`` (segmentation_models_pytorch's Unet) and ``fpn`` (FPN).

Both are multi-stage heads (``multi_stage = True``): ``cls(channels, reductions, num_classes, output_stride, width)``
takes the backbone's stage widths and strides (shallowest first) and ``forward(stages)`` the list of stage maps
B x channels[k] x H/reductions[k] x W/reductions[k]. It returns ``(logits, head_feats, {"blocks": blocks})``:

- logits B x num_classes x h x w at the final decoder block's resolution (UNet: the shallowest stage's stride,
  e.g. 2; FPN: the finest pyramid level, stride 4);
- head_feats: the final decoder block's output, which the 1x1 classifier reads;
- blocks: the outputs of the decoder blocks before the final one, deepest first (``block_channels`` gives their
  widths, ``feat_channels`` head_feats'). The segmentor puts an exit on each of them when it has exits.

The baseline (no exits) is the whole decoder; only the exits on ``blocks`` are training-only.
"""

import torch
import torch.nn.functional as F
from torch import nn

from srlib.models.layers import conv_bn_relu

UNET_WIDTH = 256  # segmentation_models_pytorch's decoder_channels (256, 128, 64, 32, 16): halving from the deepest
FPN_WIDTH = 256  # the FPN paper's pyramid width (and smp's / mmsegmentation's)
MIN_BLOCK_WIDTH = 16  # UNet block widths halve down to this, no further
FPN_MIN_STRIDE = 4  # FPN's pyramid starts at stride 4 (P2), as in the FPN paper, smp and mmsegmentation


def _resize_nearest(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``x`` resized (nearest, as smp's Unet upsamples) to ``like``'s h x w; unchanged when they already match."""
    return x if x.shape[-2:] == like.shape[-2:] else F.interpolate(x, size=like.shape[-2:], mode="nearest")


class UNetHead(nn.Module):
    """One decoder block per backbone stage below the last, from the deepest up, as smp's Unet builds it.

    Block k (k = L-1 .. 1, L stages): upsample the previous output (the last stage for the first block) to stage
    k's size (nearest), concatenate stage k (the skip), two 3x3 conv-BN-ReLU to ``width / 2^j`` channels (j = 0
    for the deepest block, at least 16). The final block (on stage 1) feeds a 1x1 classifier. smp's Unet has one
    more block, upsampling to the input size without a skip; here the logits are upsampled bilinearly like every
    other head's.
    """

    multi_stage = True

    def __init__(self, channels: list[int], reductions: list[int], num_classes: int, output_stride: int,
                 width: int = UNET_WIDTH):
        super().__init__()
        skips = channels[-2::-1]  # stage L-1 .. 1
        widths = [max(width >> j, MIN_BLOCK_WIDTH) for j in range(len(skips))]
        ins = [channels[-1], *widths[:-1]]
        self.blocks = nn.ModuleList(
            nn.Sequential(conv_bn_relu(previous + skip, out), conv_bn_relu(out, out))
            for previous, skip, out in zip(ins, skips, widths)
        )
        self.classifier = nn.Conv2d(widths[-1], num_classes, 1)
        self.block_channels = widths[:-1]
        self.feat_channels = widths[-1]

    def forward(self, stages: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        x, outputs = stages[-1], []
        for block, skip in zip(self.blocks, stages[-2::-1]):
            x = block(torch.cat([_resize_nearest(x, skip), skip], dim=1))
            outputs.append(x)
        return self.classifier(x), x, {"blocks": outputs[:-1]}


class FPNHead(nn.Module):
    """Feature Pyramid Network decoder with a semantic fusion block (after Panoptic FPN's semantic branch).

    Pyramid on the stages of stride >= 4: lateral 1x1 conv to ``width``, top-down sum with the deeper level
    upsampled (nearest), then a 3x3 conv-BN-ReLU per level: the decoder blocks, deepest first. The final block
    upsamples every level bilinearly to the finest one (stride 4), sums them and applies a 3x3 conv-BN-ReLU; a 1x1
    classifier reads it. Panoptic FPN stacks conv + 2x upsampling per level instead of one bilinear resize.
    """

    multi_stage = True

    def __init__(self, channels: list[int], reductions: list[int], num_classes: int, output_stride: int,
                 width: int = FPN_WIDTH):
        super().__init__()
        self.first = next(i for i, r in enumerate(reductions) if r >= FPN_MIN_STRIDE)
        levels = channels[self.first:][::-1]  # deepest first
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in levels)
        self.smooth = nn.ModuleList(conv_bn_relu(width, width) for _ in levels)
        self.fuse = conv_bn_relu(width, width)
        self.classifier = nn.Conv2d(width, num_classes, 1)
        self.block_channels = [width] * len(levels)
        self.feat_channels = width

    def forward(self, stages: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        top_down, blocks = None, []
        for lateral, smooth, stage in zip(self.lateral, self.smooth, stages[self.first:][::-1]):
            top_down = lateral(stage) if top_down is None else lateral(stage) + _resize_nearest(top_down, stage)
            blocks.append(smooth(top_down))
        size = blocks[-1].shape[-2:]
        merged = sum(F.interpolate(b, size=size, mode="bilinear", align_corners=False) if b.shape[-2:] != size else b
                     for b in blocks)
        feats = self.fuse(merged)
        return self.classifier(feats), feats, {"blocks": blocks}
