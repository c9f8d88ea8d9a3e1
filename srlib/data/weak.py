"""Which labels a run trains on (``data.supervision``): the ground truth, pseudo masks or scribbles.

- ``full``: the ground truth (or ``data.label_dir`` when given).
- ``pseudo`` (WSSS): the generated dataset makes CAM-like pseudo masks from its ground truth on the fly
  (``srlib.data.pseudo``, strength ``data.pseudo_noise``); a real dataset reads them from ``data.label_dir``.
- ``scribble``: the generated dataset draws scribbles on the fly (``srlib.data.scribble``, ~3 % of pixels
  labelled, the rest 255); a real dataset reads rasterised scribbles from ``data.label_dir`` (``srlib
  scribbles`` converts ScribbleSup XML files). Unlabelled pixels are ignored by the pixel loss (partial
  cross-entropy); ``loss.regularizer`` adds the DenseCRF loss (``srlib.losses.dense_crf``).

Only the training split changes: evaluation always uses the ground truth. Weak labels depend on the image
id only, never on the run's seed, so every seed of a sweep trains on the same labels.
"""

import functools

import numpy as np

from srlib.config import IGNORE_INDEX, SUPERVISIONS
from srlib.data import build_dataset
from srlib.data.generated import GeneratedDataset
from srlib.data.pseudo import pseudo_mask
from srlib.data.scribble import generated_scribbles


def _pseudo(mask, parts, name, *, noise):
    return pseudo_mask(mask, parts, name, noise)


def _scribbles(mask, parts, name):
    return generated_scribbles(mask, name)


def generated_labels(supervision: str, noise: float):
    """``labels(mask, parts, id) -> mask`` for ``GeneratedDataset``, or None for full supervision."""
    if supervision not in SUPERVISIONS:
        raise ValueError(f"unknown supervision {supervision!r}; valid: {', '.join(SUPERVISIONS)}")
    if supervision == "pseudo":
        return functools.partial(_pseudo, noise=noise)
    return _scribbles if supervision == "scribble" else None


def build_train_set(data: dict, transform=None):
    """The training split of a run's ``data`` config section (keys: ``srlib.config.DEFAULTS["data"]``) with the
    labels ``data.supervision`` asks for. ValueError naming ``data.label_dir`` when a real dataset has none."""
    supervision, label_dir = data.get("supervision", "full"), data["label_dir"]
    if data["name"] == "generated" and label_dir is None:
        labels = generated_labels(supervision, data.get("pseudo_noise", 0.0))
        return GeneratedDataset(data["root"], "train", transform=transform, labels=labels)
    if supervision != "full" and label_dir is None:
        raise ValueError(
            f"data.supervision is {supervision!r} but data.label_dir is not set: dataset {data['name']!r} reads "
            f"its {supervision} labels from a directory of PNGs (srlib scribbles converts ScribbleSup XML files)"
        )
    return build_dataset(data["name"], data["root"], "train", transform=transform, label_dir=label_dir)


def label_stats(root, supervision: str, noise: float, limit: int | None = None) -> dict:
    """Weak labels of the generated training split scored against its ground truth: {"images", "miou",
    "pixel_accuracy" (of labelled pixels), "thin_part_iou", "small_object_iou", "labelled_fraction"}
    (fractions 0..1), over the first ``limit`` images (all when None)."""
    import torch

    from srlib.data.generated import NUM_CLASSES
    from srlib.metrics import SegmentationMetrics

    truth = GeneratedDataset(root, "train")
    labels = generated_labels(supervision, noise)
    metrics = SegmentationMetrics(NUM_CLASSES, background_index=0)
    count = len(truth) if limit is None else min(limit, len(truth))
    labelled = total = 0
    for i in range(count):
        item = truth[i]
        weak = item["mask"] if labels is None else labels(item["mask"], item["parts"], item["name"])
        valid = weak != IGNORE_INDEX
        labelled, total = labelled + int(valid.sum()), total + weak.size
        # Unlabelled pixels are left out (target 255 there): score the labels where they say something.
        pred = torch.from_numpy(np.where(valid, weak, 0))
        target = torch.from_numpy(np.where(valid, item["mask"], IGNORE_INDEX))
        metrics.update(pred[None], target[None], torch.from_numpy(item["parts"])[None])
    scores = metrics.compute()
    keys = ("miou", "pixel_accuracy", "thin_part_iou", "small_object_iou")
    return {"images": count, **{key: scores[key] for key in keys}, "labelled_fraction": labelled / total}
