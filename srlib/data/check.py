"""What a run trains and evaluates on, identified by content, and every item read once before training.

``fingerprint(name, datasets)`` hashes the dataset name, each split's item ids and the sizes of the files
every item reads (plus the folder name of each file, so pseudo masks in ``label_dir`` differ from the ground
truth): cheap (one ``stat`` per file, no decoding) and independent of where the data lives, so a moved copy
keeps its fingerprint while another dataset, split list or label folder gets another one. Runs record it
next to their config hash. It does not see an edit that keeps a file's size (a mask value changed in an
uncompressed PNG, a JPEG re-encoded to the same length): hashing the content of every file at every run start
would read a whole dataset (COCO-Stuff: 123k images and masks, about 20 GB) before each run, even to answer a
finished run, which its record answers in under a second; a ``stat`` costs about 2 us per file.

``check_items(dataset, key)`` reads every item of a dataset (``dataset.read(i)``), so a truncated image or a
mask value outside the valid set fails before the run directory, the checkpoint or the MLflow run exist,
naming the file. A dataset that passed is remembered under ``$XDG_CACHE_HOME/srlib/data-checks/``
(``~/.cache`` by default) by its key (the data fingerprint and the split) and the state of its files
(``file_state``: path, size, modification and status-change time of each), so reruns and the other runs of a
sweep skip the scan while a file edited since, whatever its size, has the dataset read again.
"""

import hashlib
import logging
import os
from pathlib import Path

log = logging.getLogger("srlib.data")


def fingerprint(name: str, datasets) -> str:
    """16 hex digits identifying the content of ``datasets`` (each with ``items``: (id, path, ...) tuples)."""
    digest = hashlib.sha256(name.encode())
    for dataset in datasets:
        digest.update(b"\0split")
        for item_id, *paths in dataset.items:
            sizes = " ".join(f"{Path(p).parent.name}/{os.stat(p).st_size}" for p in paths)
            digest.update(f"{item_id} {sizes}\n".encode())
    return digest.hexdigest()[:16]


def data_fingerprint(data: dict) -> str:
    """``fingerprint`` of a run config's ``data`` section: its training split as a run builds it
    (``srlib.data.weak.build_train_set``: the labels ``data.supervision`` and ``label_dir`` ask for) and its
    evaluation split. FileNotFoundError / ValueError name a missing root, split list or file."""
    from srlib.data import build_dataset
    from srlib.data.weak import build_train_set

    splits = [build_train_set(data), build_dataset(data["name"], data["root"], data["eval_split"])]
    return fingerprint(data["name"], splits)


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "srlib" / "data-checks"


def file_state(dataset) -> str:
    """16 hex digits of the absolute path, size, modification and status-change time (ns) of every file the
    items of ``dataset`` read: any write to a file (the status-change time cannot be set back) changes it."""
    digest = hashlib.sha256()
    for item_id, *paths in dataset.items:
        for path in paths:
            stat = os.stat(path)
            digest.update(f"{item_id} {os.path.abspath(path)} {stat.st_size} {stat.st_mtime_ns} {stat.st_ctime_ns}\n"
                          .encode())
    return digest.hexdigest()[:16]


def check_items(dataset, key: str) -> None:
    """Read every item of ``dataset`` once (ValueError / FileNotFoundError name the bad file); skipped when
    the dataset with ``key`` (its data fingerprint and split) passed before on this machine with its files as
    they are now (``file_state``)."""
    marker = _cache_dir() / f"{key}-{len(dataset)}-{file_state(dataset)}.ok"
    if marker.exists():
        return
    log.info("checking %d items (decoding every image and mask once)", len(dataset))
    for i in range(len(dataset)):
        dataset.read(i)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError as error:  # an unwritable cache only costs the next run the same scan
        log.warning("could not remember the data check in %s: %s", marker, error)
