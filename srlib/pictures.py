"""One run's picture grid: images, ground truth and predictions side by side, wrong pixels outlined (written by
every run's evaluation, ``srlib.evaluate``, and by the benchmark's ``srlib.report.figures``). matplotlib (Agg) is
imported when a picture is drawn.
"""

import math
from pathlib import Path

from srlib.config import IGNORE_INDEX
from srlib.palette import color_table


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def picture_grid(path: Path, images, masks, predictions: list[tuple[str, object]], palette, classes, title: str,
                 dpi: int = 100) -> Path:
    """One column per image; rows: image, ground truth, then each prediction with its wrong pixels outlined in
    yellow (ignore pixels white); a key of the colours of the classes shown. Landscape and about 1000 x 700
    pixels for six images, to fit a screen (the Snakemake report shows it at its own size).

    images uint8 K x H x W x 3; masks and each prediction int K x H x W (class ids, 255 = ignore);
    predictions: [(row label, array)]; palette: RGB triplets per class id; classes: their names.
    """
    import numpy as np
    from matplotlib.patches import Patch

    plt = pyplot()
    table = color_table(palette)
    count = len(images)
    rows = [("image", list(images), None), ("ground truth", [table[m.clip(0, 255)] for m in masks], None)]
    rows += [(label, [table[p.clip(0, 255)] for p in preds],
              [(p != m) & (m != IGNORE_INDEX) for p, m in zip(preds, masks)]) for label, preds in predictions]
    width = max(1.5 * count + 1.4, 8.0)  # room for the title and the key with few images
    fig, axes = plt.subplots(len(rows), count, figsize=(width, 1.5 * len(rows) + 1.1), squeeze=False)
    for r, (label, panels, wrong) in enumerate(rows):
        for c in range(count):
            ax = axes[r, c]
            ax.imshow(panels[c], interpolation="nearest")
            if wrong is not None and wrong[c].any():  # outline the wrong pixels, whatever the palette's colours
                ax.contour(np.kron(wrong[c], np.ones((4, 4))), levels=[0.5], colors="yellow", linewidths=0.7,
                           extent=(-0.5, wrong[c].shape[1] - 0.5, wrong[c].shape[0] - 0.5, -0.5))
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=8)
    shown = sorted({int(v) for a in [masks, *(p for _, p in predictions)] for v in np.unique(a) if v < len(classes)})
    key = [Patch(facecolor=table[i] / 255, edgecolor="0.5", label=classes[i]) for i in shown]
    key += [Patch(facecolor="white", edgecolor="0.5", label="ignore"),
            Patch(facecolor="none", edgecolor="yellow", label="wrong pixels")]
    fig.legend(handles=key, loc="lower center", ncol=min(len(key), 7), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=9)
    key_rows = math.ceil(len(key) / 7)
    fig.tight_layout(rect=(0, 0.25 * key_rows / fig.get_figheight(), 1, 1 - 0.25 / fig.get_figheight()))
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
