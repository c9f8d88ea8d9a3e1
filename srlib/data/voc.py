"""PASCAL VOC 2012 with the SBD augmentation ("voc_aug"): 21 classes, 0 = background, 255 = ignore.

Layout (``root`` is ``VOC2012`` itself, or a folder holding ``VOC2012/`` or ``VOCdevkit/VOC2012/``)::

    JPEGImages/<id>.jpg
    SegmentationClassAug/<id>.png    index PNGs (L or palette mode), 0..20 and 255 (object borders)
    SegmentationClass/<id>.png       used when SegmentationClassAug/ is absent (plain VOC palette PNGs)
    ImageSets/Segmentation/train_aug.txt   (or trainaug.txt as mmsegmentation writes it,
                                            or ImageSets/SegmentationAug/train_aug.txt)
    ImageSets/Segmentation/val.txt

Splits: "train" = the 10,582-image train_aug list, "val" = the 1,449-image VOC val list. List lines are
image ids or DeepLab-style pairs ("/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png").
Palette PNGs are read as their indices, never their colours. Mask values: 0..20 and 255 (anything else is an
error naming the file). WSSS: ``label_dir/<id>.png`` in the same convention replaces the training masks.
"""

from srlib.data.common import IGNORE_INDEX, PairDataset, check_split, find_root, listed_items  # noqa: F401
from srlib.data.common import make_lut, voc_colormap

CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
NUM_CLASSES = len(CLASSES)
PALETTE = voc_colormap(NUM_CLASSES)
SPLITS = ("train", "val")
LUT = make_lut({i: i for i in range(NUM_CLASSES)})

_SPLIT_LISTS = {
    "train": ("ImageSets/Segmentation/train_aug.txt", "ImageSets/Segmentation/trainaug.txt",
              "ImageSets/SegmentationAug/train_aug.txt"),
    "val": ("ImageSets/Segmentation/val.txt",),
}
_MASK_DIRS = ("SegmentationClassAug", "SegmentationClass")


class VOCAugDataset(PairDataset):
    """VOC 2012 aug split ``split`` under ``root``; ``label_dir``: pseudo masks for "train" (WSSS)."""

    def __init__(self, root, split: str, transform=None, label_dir=None):
        check_split("voc_aug", split, SPLITS, label_dir)
        root = find_root("voc_aug", root, "JPEGImages", ("", "VOC2012", "VOCdevkit/VOC2012"))
        items = listed_items("voc_aug", split, root, _SPLIT_LISTS[split], _MASK_DIRS, label_dir)
        super().__init__(items, LUT, transform)
