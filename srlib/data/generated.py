"""The embedded generated dataset ("generated"), as a reader: classes, palette, splits, the Dataset, the stats of a
written root and a grid of samples. The generator's default parameters are ``srlib.data.GENERATE_DEFAULTS``.

A procedurally generated failure-mode dataset, written once by ``srlib.data.synth.generate`` (``srlib
generate-data``), which also documents how every image provokes the two failures the paper names. 10
classes, 0 = background, 255 = ignore (never written by the generator, but allowed in WSSS masks).

Layout (VOC-like; ``root`` is the folder ``generate`` wrote)::

    images/<id>.png     RGB
    masks/<id>.png      palette PNG of class ids 0..9
    parts/<id>.png      L-mode 0/1: the thin-part pixels that stay visible (scored by the thin-part IoU)
    splits/{train,val,test}.txt
    meta.json           classes, palette, generator parameters and statistics

Items carry "parts" (BoolTensor H x W) besides the usual image, mask and name.
"""

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from srlib.data.common import (IGNORE_INDEX, check_split, label_folder, make_lut, read_image, read_mask,  # noqa: F401
                               read_split_list, require_file)
from srlib.files import read_json
from srlib.palette import color_table

CLASSES = ("background", "cat", "dog", "bus", "train", "bird", "person", "lamppost", "bicycle", "boat")
PALETTE = [
    [0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
    [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60],
]
NUM_CLASSES = len(CLASSES)
SPLITS = ("train", "val", "test")


# ---------------------------------------------------------------- reading
_MASK_LUT = make_lut({c: c for c in range(NUM_CLASSES)})
_PARTS_LUT = make_lut({0: 0, 1: 1})


class GeneratedDataset:
    """Items of one split of a generated root (a map-style dataset).

    Without a transform: {"image": uint8 H x W x 3, "mask": int64 H x W (class ids, 255 ignore),
    "parts": bool H x W (thin-part pixels), "name": id}. With one, ``transform(image, mask, parts)``
    must return (FloatTensor 3 x H x W, LongTensor H x W, BoolTensor H x W) and those are returned.
    label_dir (WSSS, "train" split only): masks ``label_dir/<id>.png`` replace root/masks. labels (weak
    supervision, see ``srlib.data.weak``): ``labels(mask, parts, id) -> mask`` replaces each mask read, before
    the transform.
    """

    def __init__(self, root, split, transform=None, label_dir=None, labels=None):
        check_split("generated", split, SPLITS, label_dir)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"generated: dataset root not found: {self.root} "
                                    "(create it with srlib.data.synth.generate)")
        list_path = self.root / "splits" / f"{split}.txt"
        require_file(list_path, "generated split list")
        mask_dir = self.root / "masks" if label_dir is None else label_folder("generated", label_dir)
        # (id, image, mask, parts) per item
        self.items = [(name, self.root / "images" / f"{name}.png", mask_dir / f"{name}.png",
                       self.root / "parts" / f"{name}.png") for name in read_split_list(list_path)]
        self.transform, self.labels = transform, labels

    def __len__(self):
        return len(self.items)

    def read(self, i) -> dict:
        """Item ``i`` as stored (numpy arrays, no transform)."""
        name, image_path, mask_path, parts_path = self.items[i]
        image = read_image(image_path)
        mask = read_mask(mask_path, _MASK_LUT)
        parts = read_mask(parts_path, _PARTS_LUT) == 1
        if not image.shape[:2] == mask.shape == parts.shape:
            raise ValueError(f"{name}: image {image.shape[:2]}, mask {mask.shape} and parts {parts.shape} differ")
        if self.labels is not None:
            mask = self.labels(mask, parts, name)
        return {"image": image, "mask": mask, "parts": parts, "name": name}

    def __getitem__(self, i):
        item = self.read(i)
        if self.transform is not None:
            item["image"], item["mask"], item["parts"] = self.transform(item["image"], item["mask"], item["parts"])
        return item


def existing_stats(root: Path, params: dict) -> dict | None:
    """The stats in the meta.json of a complete dataset at ``root`` generated with ``params`` (those of
    ``srlib.data.synth.generate``); None if root is absent or empty. ValueError / FileExistsError when it holds
    other parameters or no dataset."""
    meta_path = root / "meta.json"
    if meta_path.is_file():
        meta = read_json(meta_path)
        if meta.get("params") == params:
            return meta["stats"]
        old = meta.get("params", {})
        diff = {k: (old.get(k), v) for k, v in params.items() if old.get(k) != v}
        raise ValueError(f"{root} holds a generated dataset with other parameters (on disk, requested): {diff}; "
                         "delete it or choose another root")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} exists but holds no generated dataset (no meta.json); "
                              "delete it or choose another root")
    return None


# ---------------------------------------------------------------- looking at it
def save_sample_grid(root, out_png, n=16, split="train"):
    """Write a PNG grid of the first n samples of a split: image | mask overlay | thin parts, per sample.

    Panels are upscaled (nearest) to at least 128 px; a legend row names the class colours.
    """
    data = GeneratedDataset(root, split)
    n = min(n, len(data))
    if n < 1:
        raise ValueError(f"n={n!r}: nothing to draw from split {split!r}")
    palette = color_table(PALETTE).astype(np.float64)
    panels = []
    for i in range(n):
        item = data[i]
        image = item["image"].astype(np.float64)
        colour = palette[item["mask"]]
        overlay = np.where((item["mask"] > 0)[..., None], 0.25 * image + 0.75 * colour, 0.6 * image)
        parts = np.where(item["parts"][..., None], np.array([255.0, 255.0, 0.0]), 0.35 * image)
        panels.append(np.concatenate([image, overlay, parts], 1).astype(np.uint8))
    zoom = max(1, -(-128 // panels[0].shape[0]))
    cols = math.ceil(math.sqrt(n))
    gap = 4
    h, w = panels[0].shape[0] * zoom, panels[0].shape[1] * zoom
    rows = math.ceil(n / cols)
    legend_h = 20
    canvas = Image.new("RGB", (cols * (w + gap) + gap, rows * (h + gap) + gap + legend_h), (255, 255, 255))
    for i, cell in enumerate(panels):
        tile = Image.fromarray(cell).resize((w, h), Image.NEAREST)
        canvas.paste(tile, (gap + (i % cols) * (w + gap), gap + (i // cols) * (h + gap)))
    draw = ImageDraw.Draw(canvas)
    x, y = gap, rows * (h + gap) + gap
    for name, colour in zip(CLASSES, PALETTE):
        draw.rectangle([x, y + 2, x + 12, y + 14], fill=tuple(colour), outline=(0, 0, 0))
        draw.text((x + 16, y + 2), name, fill=(0, 0, 0))
        x += 16 + int(draw.textlength(name)) + 10
    draw.text((x, y + 2), "thin parts: yellow", fill=(0, 0, 0))
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_png, format="PNG")
    return out_png
