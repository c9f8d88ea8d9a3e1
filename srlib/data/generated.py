"""The embedded generated dataset ("generated"), as a reader: classes, palette, splits and the Dataset.

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

from pathlib import Path

from srlib.data.common import (IGNORE_INDEX, check_split, label_folder, make_lut, read_image, read_mask,  # noqa: F401
                               read_split_list, require_file)

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
            raise FileNotFoundError(f"generated: dataset root not found: {self.root} (create it with srlib.data.synth.generate)")
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
