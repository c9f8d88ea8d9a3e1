"""Shared pieces of the real-dataset loaders: finding the user's files, decoding index masks, the pair dataset.

Every real dataset is a list of (image id, image file, mask file) and a 256-entry lookup table (LUT) from the
raw value stored in the mask PNG to the class id the loader yields (0..C-1, 255 = ignore, -1 = invalid value).
Building a dataset checks the layout, the split list and the first image / mask pair; every other file is
opened when its item is read, and a missing, truncated or corrupt file or a mask value outside the valid set
then raises an error naming the file (``srlib.data.check`` reads every item once before a run trains).
Datasets are plain map-style classes (``__len__``, ``__getitem__``), so listing and checking them imports no torch.
"""

from pathlib import Path

import numpy as np
from PIL import Image

from srlib.config import IGNORE_INDEX
from srlib.palette import voc_colormap  # noqa: F401 - voc_colormap: the dataset modules' PALETTE



def make_lut(mapping: dict[int, int], ignored=()) -> np.ndarray:
    """Raw mask value -> class id table (int64, 256 entries): ``mapping`` entries, ``ignored`` values and the
    raw value 255 map to 255 (ignore); every other raw value is invalid (-1)."""
    lut = np.full(256, -1, dtype=np.int64)
    lut[list(ignored)] = IGNORE_INDEX
    for raw, class_id in mapping.items():
        lut[raw] = class_id
    lut[IGNORE_INDEX] = IGNORE_INDEX
    return lut


def check_split(dataset: str, split: str, splits, label_dir) -> None:
    """Reject unknown splits, and pseudo masks (``label_dir``) anywhere but the training split."""
    if split not in splits:
        raise ValueError(f"{dataset}: unknown split {split!r}; valid: {', '.join(splits)}")
    if label_dir is not None and split != "train":
        raise ValueError(
            f"{dataset}: label_dir={str(label_dir)!r} given for split {split!r}; pseudo masks replace the ground "
            "truth only for the 'train' split, evaluation always uses the ground truth"
        )


def label_folder(dataset: str, label_dir) -> Path:
    """The WSSS pseudo-mask folder; FileNotFoundError naming it when it does not exist."""
    folder = Path(label_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{dataset}: label_dir not found: {folder}")
    return folder


def find_root(dataset: str, root, marker: str, subdirs=("",)) -> Path:
    """The directory ``root/<subdir>`` (first of ``subdirs``) that holds the folder ``marker``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{dataset}: dataset root not found: {root}")
    candidates = [root / sub for sub in subdirs]
    for candidate in candidates:
        if (candidate / marker).is_dir():
            return candidate
    tried = ", ".join(str(c / marker) for c in candidates)
    raise FileNotFoundError(f"{dataset}: no {marker}/ folder under {root} (looked for {tried})")


def first_existing(what: str, paths) -> Path:
    """The first of ``paths`` that exists; FileNotFoundError naming all of them otherwise."""
    for path in paths:
        if path.exists():
            return path
    raise FileNotFoundError(f"{what} not found; looked for: {', '.join(str(p) for p in paths)}")


def read_split_list(path: Path) -> list[str]:
    """Image ids of a split list, one a line. Lines may also be DeepLab style pairs
    (``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png``): the id is the first path's file stem."""
    names = [Path(line.split()[0]).stem for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise ValueError(f"split list is empty: {path}")
    return names


def listed_items(dataset: str, split: str, root: Path, split_lists, mask_dirs, label_dir) -> list:
    """Items (id, ``root/JPEGImages/<id>.jpg``, ``<mask folder>/<id>.png``) for the ids of the first existing split
    list; the mask folder is ``label_dir`` when given, else the first existing of ``mask_dirs`` under root."""
    names = read_split_list(first_existing(f"{dataset} {split} split list", [root / p for p in split_lists]))
    if label_dir is None:
        mask_dir = first_existing(f"{dataset} mask folder", [root / d for d in mask_dirs])
    else:
        mask_dir = label_folder(dataset, label_dir)
    return [(n, root / "JPEGImages" / f"{n}.jpg", mask_dir / f"{n}.png") for n in names]


def list_files(dataset: str, folder: Path, pattern: str) -> list[Path]:
    """Sorted files matching ``pattern`` under ``folder``; errors name the folder when it is missing or empty."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{dataset}: split folder not found: {folder}")
    files = sorted(folder.glob(pattern))
    if not files:
        raise ValueError(f"{dataset}: no files matching {pattern!r} in {folder}")
    return files


def require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")


def _decode(path: Path, what: str, convert) -> np.ndarray:
    """``convert(opened PIL image)``; a file PIL cannot decode (truncated, corrupt, not an image) raises
    ValueError naming it."""
    require_file(path, what)
    try:
        with Image.open(path) as image:
            return convert(image)
    except (OSError, SyntaxError, ValueError) as error:  # PIL's errors (UnidentifiedImageError is an OSError)
        raise ValueError(f"{path}: cannot read {what}: {error}") from None


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 H x W x 3; ValueError naming the file when it cannot be decoded."""
    return _decode(path, "image", lambda image: np.asarray(image.convert("RGB"), dtype=np.uint8))


def _index_values(image) -> np.ndarray:
    if image.mode not in ("P", "L", "I", "I;16"):
        raise ValueError(f"expected a single-channel index PNG (mode P or L), got mode {image.mode}")
    return np.asarray(image)


def _describe(values) -> str:
    """Sorted ints as compact ranges: [0, 1, 2, 5, 255] -> '0-2, 5, 255'."""
    runs, start = [], None
    for i, value in enumerate(values):
        if start is None:
            start = value
        if i + 1 == len(values) or values[i + 1] != value + 1:
            runs.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ", ".join(runs)


def read_mask(path: Path, lut: np.ndarray) -> np.ndarray:
    """Class ids int64 H x W from a single-channel index PNG (palette 'P', 'L' or 16-bit), decoded by ``lut``.

    Palette PNGs are read as their indices, not their colours. Raises ValueError naming the file and the
    offending values when the mask holds a value ``lut`` marks invalid.
    """
    raw = _decode(path, "mask", _index_values)
    if raw.dtype == np.uint8:  # counting is much faster than np.unique on large masks
        values = np.flatnonzero(np.bincount(raw.ravel(), minlength=256))
    else:
        values = np.unique(raw).astype(np.int64)
    in_range = values[(values >= 0) & (values < len(lut))]
    bad = np.concatenate([values[(values < 0) | (values >= len(lut))], in_range[lut[in_range] < 0]])
    if bad.size:
        valid = _describe(np.flatnonzero(lut >= 0).tolist())
        raise ValueError(f"{path}: mask values {sorted(bad.tolist())} outside the valid set ({valid})")
    return lut[raw]


class PairDataset:
    """Images paired with index masks, following the ``srlib.data`` item contract (a map-style dataset).

    ``items``: (image id, image path, mask path) triples; ``lut``: see ``make_lut``. An item is
    {"image", "mask", "name"}: without ``transform`` uint8 H x W x 3 and int64 H x W numpy arrays, with it
    whatever ``transform(image, mask, None)`` returns (normalised FloatTensor 3 x H x W, LongTensor H x W).
    """

    def __init__(self, items: list[tuple[str, Path, Path]], lut: np.ndarray, transform=None):
        self.items, self.lut, self.transform = items, lut, transform
        # Fail fast on a wrong layout or label_dir: the first pair must exist (the rest are checked when read).
        require_file(items[0][1], "image")
        require_file(items[0][2], "mask")

    def __len__(self) -> int:
        return len(self.items)

    def read(self, index: int) -> dict:
        """Item ``index`` as stored: {"image": uint8 H x W x 3, "mask": int64 H x W, "name"}, no transform."""
        name, image_path, mask_path = self.items[index]
        image, mask = read_image(image_path), read_mask(mask_path, self.lut)
        if image.shape[:2] != mask.shape:
            raise ValueError(
                f"image {image_path} is {image.shape[0]}x{image.shape[1]} but its mask {mask_path} is "
                f"{mask.shape[0]}x{mask.shape[1]}"
            )
        return {"image": image, "mask": mask, "name": name}

    def __getitem__(self, index: int) -> dict:
        item = self.read(index)
        if self.transform is not None:
            item["image"], item["mask"], _ = self.transform(item["image"], item["mask"], None)
        return item
