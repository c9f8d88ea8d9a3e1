"""Evaluate an inference model over a whole split and write the evaluation artifacts of a run."""

import csv
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from srlib.data.transforms import denormalize
from srlib.figures import picture_grid
from srlib.inference import predict_logits
from srlib.metrics import SegmentationMetrics
from srlib.sweep import path_axes


@torch.no_grad()
def evaluate(model, dataset, info, *, device, batch_size: int = 16, window: int | None = None,
             keep: int = 8) -> tuple[dict, dict]:
    """Metrics over ``dataset`` (see SegmentationMetrics.compute) and the first ``keep`` images' predictions.

    ``info`` is the dataset's ``srlib.data.dataset_info``: its class count, and its background class
    (``background_index``), which is left out of the part and small-object scores.

    ``model(images B x 3 x H x W) -> logits B x C x H x W``. Returns (metrics, pictures) with pictures =
    {"images": uint8 K x H x W x 3, "masks": int64 K x H x W, "preds": int64 K x H x W}.
    """
    was_training = model.training
    model.eval()
    meter = SegmentationMetrics(info["num_classes"], background_index=info["background_index"])
    kept = {"images": [], "masks": [], "preds": []}
    for items in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=list):
        for batch in same_size_batches(items):
            images = batch["image"].to(device)
            target = batch["mask"].to(device)
            pred = predict_logits(model, images, window=window).argmax(1)
            meter.update(pred, target, batch.get("parts"))
            for i in range(len(pred)):
                if len(kept["preds"]) == keep or (kept["preds"] and pred[i].shape != kept["preds"][0].shape):
                    continue  # pictures are stacked into one array: keep images of the first kept size
                kept["images"].append(denormalize(batch["image"][i]))
                kept["masks"].append(batch["mask"][i].numpy())
                kept["preds"].append(pred[i].cpu().numpy())
    model.train(was_training)
    pictures = {name: np.stack(arrays) if arrays else np.zeros((0,)) for name, arrays in kept.items()}
    return meter.compute(), pictures


def same_size_batches(items: list[dict]) -> list[dict]:
    """Stack dataset items into batches of equal image size (datasets such as VOC mix sizes), in order."""
    groups: dict[tuple, list[dict]] = {}
    for item in items:
        groups.setdefault(tuple(item["image"].shape), []).append(item)
    return [{key: torch.stack([item[key] for item in group]) for key in group[0] if key != "name"}
            for group in groups.values()]


def write_artifacts(out_dir: Path, metrics: dict, pictures: dict, info: dict) -> list[Path]:
    """per_class_iou.csv, predictions.npz and pictures.png (``srlib.figures.picture_grid``: image, ground truth,
    prediction with wrong pixels outlined, class key) in ``out_dir``; returns their paths."""
    per_class = out_dir / "per_class_iou.csv"
    with per_class.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class_id", "class", "iou"])
        for class_id, (name, iou) in enumerate(zip(info["classes"], metrics["iou_per_class"])):
            writer.writerow([class_id, name, "" if iou is None else f"{iou:.6f}"])
    paths = [per_class]
    if len(pictures["preds"]):
        npz = out_dir / "predictions.npz"
        np.savez_compressed(npz, **pictures)
        png = picture_grid(out_dir / "pictures.png", pictures["images"], pictures["masks"],
                           [("prediction", pictures["preds"])], info["palette"], list(info["classes"]),
                           f"{_cell(out_dir)}: first {len(pictures['preds'])} "
                           f"validation images (mIoU over the split {100 * (metrics['miou'] or 0):.1f} %)")
        paths += [npz, png]
    return paths


def _cell(out_dir: Path) -> str:
    """'generated · deeplabv3_resnet18 · ce · baseline · seed 0' from a run directory's path (else its name)."""
    axes = path_axes(out_dir)
    return " · ".join(f"seed {v}" if k == "seed" else v for k, v in axes.items()) or out_dir.name
