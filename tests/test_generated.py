"""The generated failure-mode dataset: determinism, failure-case statistics, class coverage, item contract."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from srlib.data import synth_looks
from srlib.data.generated import CLASSES, SPLITS, GeneratedDataset
from srlib.data.generated import save_sample_grid
from srlib.data.synth import CONFUSABLE_PAIRS, generate
from srlib.data.transforms import eval_transform

SIZE = 48
PARAMS = dict(size=SIZE, n_train=30, n_val=10, n_test=10)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "seed0"
    generate(path, seed=0, **PARAMS)
    return path


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def items(root, split):
    data = GeneratedDataset(root, split)
    return [data[i] for i in range(len(data))]


def test_same_seed_same_bytes_whatever_the_workers_other_seed_differs(root, tmp_path):
    generate(tmp_path / "again", seed=0, workers=2, **PARAMS)
    generate(tmp_path / "seed1", seed=1, **PARAMS)
    reference = files(root)
    assert len(reference) == 3 * 50 + 3 + 1
    assert files(tmp_path / "again") == reference
    other = files(tmp_path / "seed1")
    assert other.keys() == reference.keys()
    assert sum(other[k] != reference[k] for k in reference if k.startswith("images/")) == 50


def test_rerun_is_a_no_op_and_other_params_are_refused(root):
    meta = json.loads((root / "meta.json").read_text())
    stamp = (root / "meta.json").stat().st_mtime_ns
    assert generate(root, seed=0, **PARAMS) == meta["stats"]
    assert (root / "meta.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="seed"):
        generate(root, seed=3, **PARAMS)
    assert not list(root.parent.glob("*.tmp*"))  # nothing half-written left beside it
    assert meta["classes"] == list(CLASSES) and meta["params"]["size"] == SIZE


@pytest.mark.parametrize("bad, name", [
    (dict(size=16), "size=16"), (dict(n_val=0), "n_val=0"), (dict(n_train=2.5), "n_train=2.5"),
    (dict(thin_part_prob=1.5), "thin_part_prob=1.5"), (dict(small_object_prob=-0.1), "small_object_prob=-0.1"),
])
def test_bad_parameters_name_the_value(tmp_path, bad, name):
    with pytest.raises(ValueError, match=name):
        generate(tmp_path / "x", **{**PARAMS, **bad})
    assert not (tmp_path / "x").exists()


def object_run(mask, y, x, dy, dx):
    """Length of the run of mask[y, x]'s class through (y, x) along direction (dy, dx)."""
    n = 1
    for sign in (1, -1):
        k = 1
        while 0 <= y + sign * k * dy < SIZE and 0 <= x + sign * k * dx < SIZE and \
                mask[y + sign * k * dy, x + sign * k * dx] == mask[y, x]:
            n, k = n + 1, k + 1
    return n


def test_thin_parts_exist_and_are_at_most_two_pixels_wide(root):
    part_pixels = 0
    for split in SPLITS:
        for item in items(root, split):
            mask, parts = item["mask"], item["parts"]
            assert not (parts & (mask == 0)).any()
            for y, x in zip(*np.nonzero(parts)):
                width = min(object_run(mask, y, x, dy, dx) for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)))
                assert width <= 2, (item["name"], y, x)
            part_pixels += parts.sum()
    share = part_pixels / (50 * SIZE * SIZE)
    assert share > 0.005
    stats = json.loads((root / "meta.json").read_text())["stats"]["all"]
    assert stats["thin_part_pixel_share"] == pytest.approx(share, abs=1e-6)


def test_thin_part_prob_zero_gives_no_part_pixels(tmp_path):
    stats = generate(tmp_path / "noparts", size=32, n_train=9, n_val=1, n_test=1, thin_part_prob=0.0)
    assert stats["all"]["thin_part_pixel_share"] == 0
    assert not any(item["parts"].any() for item in items(tmp_path / "noparts", "train"))


def test_small_objects_below_one_percent_exist(root):
    small = 0
    for split in SPLITS:
        for item in items(root, split):
            for c in range(1, len(CLASSES)):
                blobs, n = ndimage.label(item["mask"] == c)
                sizes = np.bincount(blobs.ravel())[1:]
                small += int(((sizes < 0.01 * SIZE * SIZE) & (sizes >= 3)).sum())
    assert small >= 10
    stats = json.loads((root / "meta.json").read_text())["stats"]
    assert all(stats[split]["small_objects"] > 0 for split in SPLITS)


def test_every_class_and_both_confusable_pairs_occur_in_every_split(root):
    stats = json.loads((root / "meta.json").read_text())["stats"]
    for split in SPLITS:
        present = set()
        for item in items(root, split):
            present |= set(np.unique(item["mask"]).tolist())
        assert present == set(range(len(CLASSES))), split
        assert all(stats[split]["class_presence"][name] > 0 for name in CLASSES)
    assert {a for pair in CONFUSABLE_PAIRS for a in pair} <= set(CLASSES)


def test_confusable_pairs_are_painted_by_the_same_texture_code():
    size = 32
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    for seed in range(5):
        def paint(name):
            return synth_looks.paint(name, np.random.default_rng(seed), xx - 16, yy - 16, size, 1, 12.0)
        for a, b in CONFUSABLE_PAIRS:
            assert all(np.array_equal(p, q) for p, q in zip(paint(a), paint(b)))
        assert not np.array_equal(paint("cat")[0], paint("bird")[0])


def test_confusable_pairs_share_pixel_statistics_on_disk(tmp_path):
    generate(tmp_path / "many", seed=0, size=32, n_train=270, n_val=1, n_test=1)
    pixels = {c: [] for c in range(1, len(CLASSES))}
    for item in items(tmp_path / "many", "train"):
        for c in pixels:
            pixels[c].append(item["image"][item["mask"] == c].astype(float))
    mean = {CLASSES[c]: np.concatenate(v).mean(0) for c, v in pixels.items()}
    std = {CLASSES[c]: np.concatenate(v).std(0) for c, v in pixels.items()}

    def gap(a, b):
        return np.abs(mean[a] - mean[b]).max()
    within = [gap(a, b) for a, b in CONFUSABLE_PAIRS]
    across = [gap("cat", "bus"), gap("dog", "train"), gap("cat", "bird"), gap("bus", "boat")]
    assert max(within) < 20 < min(across)
    assert all(np.abs(std[a] - std[b]).max() < 15 for a, b in CONFUSABLE_PAIRS)


def test_item_contract_with_and_without_transform(root, tmp_path):
    item = GeneratedDataset(root, "val")[0]
    assert item["name"] == "val_00000"
    assert item["image"].shape == (SIZE, SIZE, 3) and item["image"].dtype == np.uint8
    assert item["mask"].shape == (SIZE, SIZE) and item["mask"].dtype == np.int64
    assert item["parts"].shape == (SIZE, SIZE) and item["parts"].dtype == bool
    assert Image.open(root / "masks" / "val_00000.png").mode == "P"
    assert Image.open(root / "parts" / "val_00000.png").mode == "L"

    tensors = GeneratedDataset(root, "val", transform=eval_transform())[0]
    assert tensors["image"].shape == (3, SIZE, SIZE) and tensors["image"].dtype == torch.float32
    assert tensors["mask"].dtype == torch.int64 and torch.equal(tensors["mask"], torch.from_numpy(item["mask"]))
    assert tensors["parts"].dtype == torch.bool and torch.equal(tensors["parts"], torch.from_numpy(item["parts"]))

    pseudo = tmp_path / "pseudo"
    pseudo.mkdir()
    Image.new("L", (SIZE, SIZE), 3).save(pseudo / "train_00000.png")
    assert (GeneratedDataset(root, "train", label_dir=pseudo)[0]["mask"] == 3).all()
    with pytest.raises(ValueError, match="label_dir"):
        GeneratedDataset(root, "val", label_dir=pseudo)
    with pytest.raises(ValueError, match="'dev'"):
        GeneratedDataset(root, "dev")
    with pytest.raises(FileNotFoundError, match="missing"):
        GeneratedDataset(tmp_path / "missing", "train")


def test_sample_grid_is_written(root, tmp_path):
    out = save_sample_grid(root, tmp_path / "grid" / "samples.png", n=4)
    with Image.open(out) as grid:
        assert grid.mode == "RGB" and grid.width > 3 * 2 * SIZE and grid.height > 2 * SIZE
