"""OCR head: object-contextual representations (Yuan, Chen, Wang, ECCV 2020, OCRNet) on the last backbone stage.

``OCRHead(in_channels, num_classes, output_stride, width)``; ``forward(last stage B x in x h x w)`` returns
``(logits, head_feats, {"aux": {"seg": aux_logits, "weight": AUX_WEIGHT}})``, all at the stage's h x w:

1. soft object regions: an auxiliary classifier (1x1 conv-BN-ReLU, 1x1 conv to classes, as HRNet-OCR's aux head)
   gives aux_logits B x K x h x w, trained against the ground truth (``srlib.losses.RunLoss`` adds
   ``AUX_WEIGHT`` x its pixel loss, OCRNet's 0.4); it is part of the test-time model, which reads the regions;
2. pixel representations: 3x3 conv-BN-ReLU to ``width`` (OCRNet: 512);
3. object region representations: for each class k, the pixel representations averaged with weights
   softmax over the h x w pixels of aux_logits[k] -> B x width x K;
4. object contextual representations: pixel-to-region attention (query: the pixels, key and value: the regions,
   ``width / 2`` channels, two 1x1 conv-BN-ReLU for query and key, one for the value, scaled dot product,
   softmax over the K regions), back to ``width`` by a 1x1 conv-BN-ReLU;
5. augmented representations: [context, pixels] -> 1x1 conv-BN-ReLU to ``width`` (head_feats), dropout 0.05,
   1x1 classifier.
"""

import torch
from torch import nn

from srlib.models.layers import conv_bn_relu

OCR_WIDTH = 512  # OCRNet's mid channels (key channels: half)
AUX_WEIGHT = 0.4  # OCRNet's weight of the soft-region classifier's loss
OCR_DROPOUT = 0.05


def _project(in_channels: int, out_channels: int, depth: int) -> nn.Sequential:
    """``depth`` 1x1 conv-BN-ReLU, the first from in_channels, all to out_channels."""
    return nn.Sequential(*(conv_bn_relu(in_channels if i == 0 else out_channels, out_channels, kernel_size=1)
                           for i in range(depth)))


class OCRHead(nn.Module):
    """OCRNet's head on the last stage; see the module docstring. head_feats: B x width x h x w."""

    multi_stage = False

    def __init__(self, in_channels: int, num_classes: int, output_stride: int, width: int = OCR_WIDTH):
        super().__init__()
        key = width // 2
        self.aux = nn.Sequential(conv_bn_relu(in_channels, in_channels, kernel_size=1),
                                 nn.Conv2d(in_channels, num_classes, 1))
        self.pixels = conv_bn_relu(in_channels, width)
        self.query = _project(width, key, 2)
        self.key = _project(width, key, 2)
        self.value = _project(width, key, 1)
        self.up = _project(key, width, 1)
        self.fuse = conv_bn_relu(2 * width, width, kernel_size=1)
        self.dropout = nn.Dropout2d(OCR_DROPOUT)
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        aux = self.aux(x)
        pixels = self.pixels(x)
        batch, _, height, width = pixels.shape
        regions = torch.softmax(aux.flatten(2), dim=2)  # B x K x hw, each class's weights over the pixels
        objects = torch.bmm(pixels.flatten(2), regions.transpose(1, 2)).unsqueeze(3)  # B x width x K x 1
        query = self.query(pixels).flatten(2).transpose(1, 2)  # B x hw x key
        key = self.key(objects).flatten(2)  # B x key x K
        value = self.value(objects).flatten(2).transpose(1, 2)  # B x K x key
        attention = torch.softmax(torch.bmm(query, key) * key.shape[1] ** -0.5, dim=2)  # B x hw x K
        context = torch.bmm(attention, value).transpose(1, 2).reshape(batch, -1, height, width)
        feats = self.fuse(torch.cat([self.up(context), pixels], dim=1))
        return self.classifier(self.dropout(feats)), feats, {"aux": {"seg": aux, "weight": AUX_WEIGHT}}
