"""Training-only exits on backbone stages, and the image-level classifier every exit carries.

``EXITS[name](in_channels, num_classes, width)`` maps a stage B x in_channels x h x w to segmentation
logits B x num_classes x h x w (same resolution); ``width`` is the official exit's conv width.
"""

import torch
from torch import nn

from srlib.models.layers import conv_bn_relu

EXIT_CHANNELS = 256  # the authors' width


def official_exit(in_channels: int, num_classes: int, width: int = EXIT_CHANNELS) -> nn.Sequential:
    """The authors' demo exit: two 3x3 conv-BN-ReLU with ``width`` (their 256) channels, then a 1x1 classifier."""
    return nn.Sequential(
        conv_bn_relu(in_channels, width),
        conv_bn_relu(width, width),
        nn.Conv2d(width, num_classes, 1),
    )


def light_exit(in_channels: int, num_classes: int, width: int = EXIT_CHANNELS) -> nn.Conv2d:
    """One 1x1 conv from the stage straight to classes (``width`` unused: it has no hidden layer)."""
    return nn.Conv2d(in_channels, num_classes, 1)


EXITS = {"official": official_exit, "light": light_exit}


class ImageClassifier(nn.Module):
    """Image-level class logits as the authors' code computes them: GAP of the seg logits, then Linear(C, C).

    forward(seg logits B x C x h x w) -> B x C.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(num_classes, num_classes)

    def forward(self, seg_logits: torch.Tensor) -> torch.Tensor:
        return self.fc(seg_logits.mean(dim=(2, 3)))
