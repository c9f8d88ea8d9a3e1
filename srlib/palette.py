"""Colours of class labels: the PASCAL VOC colour map and the lookup table that paints index maps.

numpy only, so tables and figures colour predictions without importing torch.
"""

import numpy as np

from srlib.config import IGNORE_INDEX


def voc_colormap(n: int) -> list[list[int]]:
    """The PASCAL VOC bit-interleaved colour map: RGB triplets for class ids 0..n-1."""
    palette = []
    for index in range(n):
        rgb, value = [0, 0, 0], index
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        palette.append(rgb)
    return palette


def color_table(palette, fill: int = 255) -> np.ndarray:
    """Label value -> colour lookup table, uint8 256 x 3: the RGB triplets of ``palette`` for class ids
    0..len-1, white for the ignore index (``IGNORE_INDEX``), grey level ``fill`` (default white) for every other value.

    ``color_table(palette)[labels]`` colours an index map H x W as RGB H x W x 3.
    """
    table = np.full((256, 3), fill, dtype=np.uint8)
    colors = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[:256]
    table[: len(colors)] = colors
    table[IGNORE_INDEX] = 255
    return table
