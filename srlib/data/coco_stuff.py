"""COCO-Stuff 164k: 80 thing + 91 stuff classes mapped to contiguous ids 0..170, 255 = unlabeled (ignore).

Layout (``root`` is the folder holding ``images/`` and ``annotations/``, or its parent with ``coco_stuff164k/``)::

    images/{train2017,val2017}/<id>.jpg
    annotations/{train2017,val2017}/<id>.png                  raw stuffthingmaps: COCO category id - 1
    annotations/{train2017,val2017}/<id>_labelTrainIds.png    optional, mmsegmentation's converted masks

Splits: "train" = train2017 (118k images), "val" = val2017 (5k), from the directory listing (sorted).
The raw maps store COCO category id - 1, i.e. 0..181 with 11 unused values (11, 25, 28, 29, 44, 65, 67, 68,
70, 82, 90: the category ids COCO never annotated). The standard 182 -> 171 mapping sends each used value to
its rank among the used values (0..170) and keeps 255 (unlabeled). When the first image of the split has a
``<id>_labelTrainIds.png`` the folder is read in that converted form instead (values 0..170, 255). Any other
value is an error naming the file. WSSS: ``label_dir/<id>.png`` (raw form) or ``label_dir/<id>_labelTrainIds.png``
(converted form), chosen the same way, replaces the training masks.
"""

from pathlib import Path

from srlib.data.common import IGNORE_INDEX, PairDataset, check_split, find_root, label_folder  # noqa: F401
from srlib.data.common import list_files, make_lut, voc_colormap

THINGS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis",
    "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)
STUFF = (
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage", "cardboard", "carpet",
    "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain", "desk-stuff",
    "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood",
    "flower", "fog", "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill", "house",
    "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper",
    "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield", "railing", "railroad", "river",
    "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow",
    "solid-other", "stairs", "stone", "straw", "structural-other", "table", "tent", "textile-other", "towel",
    "tree", "vegetable", "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
)
CLASSES = THINGS + STUFF
NUM_CLASSES = len(CLASSES)
PALETTE = voc_colormap(NUM_CLASSES)
SPLITS = ("train", "val")
UNUSED_RAW_IDS = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
RAW_IDS = tuple(i for i in range(182) if i not in UNUSED_RAW_IDS)  # raw value of class id k is RAW_IDS[k]
RAW_LUT = make_lut({raw: k for k, raw in enumerate(RAW_IDS)})
TRAIN_ID_LUT = make_lut({k: k for k in range(NUM_CLASSES)})

_FOLDERS = {"train": "train2017", "val": "val2017"}
_CONVERTED_SUFFIX = "_labelTrainIds.png"


def _mask_form(folder: Path, first_id: str) -> tuple[str, object]:
    """(file suffix, LUT) of a mask folder: converted train ids when the first id has one, else raw maps."""
    if (folder / f"{first_id}{_CONVERTED_SUFFIX}").is_file():
        return _CONVERTED_SUFFIX, TRAIN_ID_LUT
    return ".png", RAW_LUT


class COCOStuffDataset(PairDataset):
    """COCO-Stuff 164k split ``split`` under ``root``; ``label_dir``: pseudo masks for "train" (WSSS)."""

    def __init__(self, root, split: str, transform=None, label_dir=None):
        check_split("coco_stuff", split, SPLITS, label_dir)
        root = find_root("coco_stuff", root, "images", ("", "coco_stuff164k"))
        images = list_files("coco_stuff", root / "images" / _FOLDERS[split], "*.jpg")
        gt_dir = root / "annotations" / _FOLDERS[split]
        mask_dir = gt_dir if label_dir is None else label_folder("coco_stuff", label_dir)
        suffix, lut = _mask_form(mask_dir, images[0].stem)
        items = [(image.stem, image, mask_dir / f"{image.stem}{suffix}") for image in images]
        super().__init__(items, lut, transform)
