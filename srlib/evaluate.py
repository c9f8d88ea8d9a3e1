"""Evaluate an inference model over a whole split and write the evaluation artifacts of a run."""

import csv
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from srlib.data.transforms import denormalize
from srlib.pictures import picture_grid
from srlib.inference import predict_logits
from srlib.metrics import ExitAgreement, SegmentationMetrics
from srlib.models.segmentor import upsample
from srlib.sweep.cells import path_axes


class StackedExits(nn.Module):
    """A multi-exit ``Segmentor`` as one logits map: every exit's logits upsampled (as the test-time model
    upsamples the head's) to the input size and stacked on the channels, exit 1 first and the head last.

    forward(images B x 3 x H x W) -> B x N*C x H x W. Its last C channels are the test-time model's logits.
    """

    def __init__(self, segmentor: nn.Module):
        super().__init__()
        self.segmentor = segmentor

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([upsample(z, images.shape[-2:]) for z in self.segmentor(images)["seg"]], dim=1)


def evaluation_model(segmentor) -> tuple[nn.Module, int]:
    """(model, exits) for ``evaluate``: ``StackedExits`` when the segmentor has exits, else its test-time model."""
    exits = len(segmentor.exits) + 1
    return (StackedExits(segmentor), exits) if exits > 1 else (segmentor.inference_model(), 1)


@torch.no_grad()
def evaluate(model, dataset, info, *, device, batch_size: int = 16, window: int | None = None,
             keep: int = 8, exits: int = 1) -> tuple[dict, dict]:
    """Metrics over ``dataset`` (see SegmentationMetrics.compute) and the first ``keep`` images' predictions.

    ``info`` is the dataset's ``srlib.data.dataset_info``: its class count, and its background class
    (``background_index``), which is left out of the part and small-object scores.

    ``model(images B x 3 x H x W) -> logits B x exits*C x H x W``: with ``exits`` > 1 (``StackedExits``) the
    last C channels are the head's, which every score and picture is of, and the metrics also hold the exits'
    mIoU and the head-teacher agreement (``srlib.metrics.ExitAgreement``). Returns (metrics, pictures) with
    pictures = {"images": uint8 K x H x W x 3, "masks": int64 K x H x W, "preds": int64 K x H x W}.
    """
    was_training = model.training
    model.eval()
    num_classes = info["num_classes"]
    meter = SegmentationMetrics(num_classes, background_index=info["background_index"])
    agreement = ExitAgreement(num_classes, exits) if exits > 1 else None
    kept = {"images": [], "masks": [], "preds": []}
    for items in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=list):
        for batch in same_size_batches(items):
            images = batch["image"].to(device)
            target = batch["mask"].to(device)
            preds = [logits.argmax(1) for logits in predict_logits(model, images, window=window).split(num_classes, 1)]
            pred = preds[-1]
            meter.update(pred, target, batch.get("parts"))
            if agreement is not None:
                agreement.update(preds, target)
            for i in range(len(pred)):
                if len(kept["preds"]) == keep or (kept["preds"] and pred[i].shape != kept["preds"][0].shape):
                    continue  # pictures are stacked into one array: keep images of the first kept size
                kept["images"].append(denormalize(batch["image"][i]))
                kept["masks"].append(batch["mask"][i].numpy())
                kept["preds"].append(pred[i].cpu().numpy())
    model.train(was_training)
    pictures = {name: np.stack(arrays) if arrays else np.zeros((0,)) for name, arrays in kept.items()}
    return {**meter.compute(), **(agreement.compute() if agreement else {})}, pictures


def same_size_batches(items: list[dict]) -> list[dict]:
    """Stack dataset items into batches of equal image size (datasets such as VOC mix sizes), in order."""
    groups: dict[tuple, list[dict]] = {}
    for item in items:
        groups.setdefault(tuple(item["image"].shape), []).append(item)
    return [{key: torch.stack([item[key] for item in group]) for key in group[0] if key != "name"}
            for group in groups.values()]


def write_artifacts(out_dir: Path, metrics: dict, pictures: dict, info: dict) -> list[Path]:
    """per_class_iou.csv, predictions.npz and pictures.png (``srlib.pictures.picture_grid``: image, ground truth,
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
