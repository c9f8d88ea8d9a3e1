"""Cityscapes fine annotations: the 19 evaluation classes ("train ids"), everything else 255 (ignore).

Layout (``root`` is the folder holding ``leftImg8bit/`` and ``gtFine/``, or its parent with ``cityscapes/``)::

    leftImg8bit/{train,val,test}/<city>/<id>_leftImg8bit.png
    gtFine/{train,val,test}/<city>/<id>_gtFine_labelIds.png     raw label ids 0..33

The split is the directory listing (sorted); ``<id>`` is e.g. ``aachen_000000_000019``. The official
cityscapesScripts table maps label ids to train ids: 7 road -> 0, 8 sidewalk -> 1, 11 -> 2, 12 -> 3, 13 -> 4,
17 -> 5, 19 -> 6, 20 -> 7, 21 -> 8, 22 -> 9, 23 -> 10, 24 -> 11, 25 -> 12, 26 -> 13, 27 -> 14, 28 -> 15,
31 -> 16, 32 -> 17, 33 -> 18; the other ids 0..33 (void, ground, parking, rail track, guard rail, bridge,
tunnel, polegroup, caravan, trailer) and 255 -> 255. Any other value is an error naming the file.
(The test split's public labels are placeholders; its scores come from the official server.)
WSSS: ``label_dir/<id>.png``, also in label ids, replaces the training masks.
"""

from srlib.data.common import IGNORE_INDEX, PairDataset, check_split, find_root, label_folder  # noqa: F401
from srlib.data.common import list_files, make_lut

CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)
NUM_CLASSES = len(CLASSES)
# The official cityscapesScripts label colours of the 19 classes.
PALETTE = [
    [128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153], [153, 153, 153],
    [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60], [255, 0, 0],
    [0, 0, 142], [0, 0, 70], [0, 60, 100], [0, 80, 100], [0, 0, 230], [119, 11, 32],
]
SPLITS = ("train", "val", "test")
LABEL_ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14,
    28: 15, 31: 16, 32: 17, 33: 18,
}
LUT = make_lut(LABEL_ID_TO_TRAIN_ID, ignored=range(34))

_IMAGE_SUFFIX = "_leftImg8bit.png"


class CityscapesDataset(PairDataset):
    """Cityscapes fine split ``split`` under ``root``; ``label_dir``: pseudo masks for "train" (WSSS)."""

    def __init__(self, root, split: str, transform=None, label_dir=None):
        check_split("cityscapes", split, SPLITS, label_dir)
        root = find_root("cityscapes", root, "leftImg8bit", ("", "cityscapes"))
        images = list_files("cityscapes", root / "leftImg8bit" / split, f"*/*{_IMAGE_SUFFIX}")
        pseudo = label_folder("cityscapes", label_dir) if label_dir is not None else None
        items = []
        for image in images:
            name = image.name.removesuffix(_IMAGE_SUFFIX)
            if pseudo is None:
                mask = root / "gtFine" / split / image.parent.name / f"{name}_gtFine_labelIds.png"
            else:
                mask = pseudo / f"{name}.png"
            items.append((name, image, mask))
        super().__init__(items, LUT, transform)
