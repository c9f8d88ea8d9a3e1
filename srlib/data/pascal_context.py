"""PASCAL Context, 59 classes, in the widely used converted PNG layout (mmsegmentation's
``tools/dataset_converters/pascal_context.py`` over the Detail API's ``trainval_merged.json``).

Layout (``root`` is ``VOC2010`` itself, or a folder holding ``VOC2010/`` or ``VOCdevkit/VOC2010/``)::

    JPEGImages/<id>.jpg
    SegmentationClassContext/<id>.png              0 = background (the 400 rare classes), 1..59 the classes
    ImageSets/SegmentationContext/{train,val}.txt  4,996 / 5,104 ids

The converted masks hold 60 labels ordered by the original 459-label id, which is alphabetical. The
59-class benchmark (PascalContextDataset59 with ``reduce_zero_label`` in mmsegmentation) ignores label 0:
raw 0 -> 255, raw k -> k - 1 for k = 1..59, 255 -> 255. Any other value is an error naming the file.
WSSS: ``label_dir/<id>.png`` in the same raw convention (0 ignored) replaces the training masks.
"""

from srlib.data.common import IGNORE_INDEX, PairDataset, check_split, find_root, listed_items  # noqa: F401
from srlib.data.common import make_lut, voc_colormap

CLASSES = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle", "building",
    "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup", "curtain", "dog", "door",
    "fence", "floor", "flower", "food", "grass", "ground", "horse", "keyboard", "light", "motorbike", "mountain",
    "mouse", "person", "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign",
    "sky", "snow", "sofa", "table", "track", "train", "tree", "truck", "tvmonitor", "wall", "water", "window",
    "wood",
)
NUM_CLASSES = len(CLASSES)
PALETTE = voc_colormap(NUM_CLASSES + 1)[1:]  # VOC colour map, skipping the black of ignored label 0
SPLITS = ("train", "val")
LUT = make_lut({raw: raw - 1 for raw in range(1, NUM_CLASSES + 1)}, ignored=[0])


class PascalContextDataset(PairDataset):
    """PASCAL Context 59 split ``split`` under ``root``; ``label_dir``: pseudo masks for "train" (WSSS)."""

    def __init__(self, root, split: str, transform=None, label_dir=None):
        check_split("pascal_context", split, SPLITS, label_dir)
        root = find_root("pascal_context", root, "JPEGImages", ("", "VOC2010", "VOCdevkit/VOC2010"))
        split_list = f"ImageSets/SegmentationContext/{split}.txt"
        items = listed_items("pascal_context", split, root, [split_list], ["SegmentationClassContext"], label_dir)
        super().__init__(items, LUT, transform)
