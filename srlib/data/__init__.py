"""Datasets by name: the embedded generated dataset and loaders for the user's own copies of real datasets.

``DATASETS[name](root, split, transform=None, label_dir=None)`` builds a dataset; ``dataset_info(name)`` gives
its class names, palette and class count without touching disk. Each dataset module (``srlib/data/<module>.py``)
defines CLASSES, PALETTE, NUM_CLASSES, IGNORE_INDEX (255), SPLITS and one Dataset class; its docstring gives
the on-disk layout and the raw-value -> class-id mapping. Modules are imported on first use. To add a dataset,
write such a module and add one line to ``_SOURCES``.

Items: {"image": FloatTensor 3 x H x W (normalised), "mask": LongTensor H x W (255 = ignore), "name": str}, plus
"parts" (BoolTensor H x W) for the generated dataset; without a transform, uint8 / int64 numpy arrays.
Every dataset also has ``items`` (tuples: the image id, then the files the item reads) and ``read(i)`` (item
``i`` without the transform), which ``srlib.data.check`` uses to fingerprint and check the data.
``label_dir`` (WSSS): pseudo masks ``<label_dir>/<image id>.png`` replace the ground truth of the "train"
split, encoded as that dataset's ground-truth masks; evaluation splits always read the ground truth.
"""

import functools
import importlib
from types import ModuleType

# The embedded generated dataset's parameters (``srlib generate-data``, ``srlib.data.synth.generate``): image side
# in px, images per split, the chance each thin part is drawn and that an image gets small objects, the seed. Here,
# beside the registry, so that the workflow and the command line read them without numpy or Pillow.
GENERATE_DEFAULTS = {"seed": 0, "size": 64, "n_train": 2000, "n_val": 500, "n_test": 500,
                     "thin_part_prob": 0.9, "small_object_prob": 0.5}
# name -> (module, Dataset class in it)
_SOURCES = {
    "generated": ("srlib.data.generated", "GeneratedDataset"),
    "voc_aug": ("srlib.data.voc", "VOCAugDataset"),
    "cityscapes": ("srlib.data.cityscapes", "CityscapesDataset"),
    "pascal_context": ("srlib.data.pascal_context", "PascalContextDataset"),
    "coco_stuff": ("srlib.data.coco_stuff", "COCOStuffDataset"),
    "ade20k": ("srlib.data.ade20k", "ADE20KDataset"),
}


def dataset_module(name: str) -> ModuleType:
    """The module defining dataset ``name``; ValueError listing the valid names for an unknown one."""
    if name not in _SOURCES:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(sorted(_SOURCES))}")
    return importlib.import_module(_SOURCES[name][0])


def build_dataset(name: str, root, split: str, transform=None, label_dir=None):
    """The map-style dataset ``name`` read from ``root``, split ``split`` (see the module's SPLITS); ``label_dir``:
    WSSS masks."""
    dataset_class = getattr(dataset_module(name), _SOURCES[name][1])
    return dataset_class(root, split, transform=transform, label_dir=label_dir)


def dataset_info(name: str) -> dict:
    """{"classes": tuple, "palette": list of RGB triplets, "num_classes", "ignore_index", "splits",
    "background_index": 0 when class 0 is a background class, else None (Cityscapes: class 0 = road)}."""
    module = dataset_module(name)
    return {
        "classes": tuple(module.CLASSES),
        "palette": [list(rgb) for rgb in module.PALETTE],
        "num_classes": module.NUM_CLASSES,
        "ignore_index": module.IGNORE_INDEX,
        "splits": tuple(module.SPLITS),
        "background_index": 0 if module.CLASSES[0] == "background" else None,
    }


# name -> builder(root, split, transform=None, label_dir=None) -> Dataset
DATASETS = {name: functools.partial(build_dataset, name) for name in _SOURCES}
