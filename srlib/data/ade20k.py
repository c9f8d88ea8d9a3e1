"""ADE20K, the SceneParsing benchmark release ADEChallengeData2016: 150 classes, raw 0 = "other" (ignored).

Layout (``root`` is ``ADEChallengeData2016`` itself, or a folder holding it directly or under ``ade/``)::

    images/{training,validation}/ADE_{train,val}_<n>.jpg
    annotations/{training,validation}/ADE_{train,val}_<n>.png     raw 0..150

Splits: "train" = training (20,210 images), "val" = validation (2,000), from the directory listing (sorted).
As the benchmark scores it (mmsegmentation's ``reduce_zero_label``): raw 0 -> 255 (ignore), raw k -> k - 1
for k = 1..150, 255 -> 255. Any other value is an error naming the file.
WSSS: ``label_dir/<id>.png`` in the same raw convention (0 ignored) replaces the training masks.
"""

from srlib.data.common import IGNORE_INDEX, PairDataset, check_split, find_root, label_folder  # noqa: F401
from srlib.data.common import list_files, make_lut, voc_colormap

CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel",
    "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
    "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)
NUM_CLASSES = len(CLASSES)
PALETTE = voc_colormap(NUM_CLASSES + 1)[1:]  # VOC colour map, skipping the black of ignored raw 0
SPLITS = ("train", "val")
LUT = make_lut({raw: raw - 1 for raw in range(1, NUM_CLASSES + 1)}, ignored=[0])

_FOLDERS = {"train": "training", "val": "validation"}


class ADE20KDataset(PairDataset):
    """ADE20K split ``split`` under ``root``; ``label_dir``: pseudo masks for "train" (WSSS)."""

    def __init__(self, root, split: str, transform=None, label_dir=None):
        check_split("ade20k", split, SPLITS, label_dir)
        root = find_root("ade20k", root, "images", ("", "ADEChallengeData2016", "ade/ADEChallengeData2016"))
        images = list_files("ade20k", root / "images" / _FOLDERS[split], "*.jpg")
        gt_dir = root / "annotations" / _FOLDERS[split]
        mask_dir = gt_dir if label_dir is None else label_folder("ade20k", label_dir)
        items = [(image.stem, image, mask_dir / f"{image.stem}.png") for image in images]
        super().__init__(items, LUT, transform)
