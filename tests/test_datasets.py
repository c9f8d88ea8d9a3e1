"""Real-dataset loaders on tiny fixture trees written in each dataset's exact on-disk format."""

import numpy as np
import pytest
import torch
from PIL import Image

from srlib.data import DATASETS, build_dataset, dataset_info
from srlib.palette import voc_colormap
from srlib.data.transforms import eval_transform

H, W = 6, 8


def write_image(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def write_mask(path, values, palette=False):
    """Index PNG of ``values`` (H x W, cycled from the given list): palette ('P') or grey ('L') mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = np.resize(np.asarray(values, dtype=np.uint8), (H, W))
    image = Image.frombytes("P" if palette else "L", (W, H), raw.tobytes())
    if palette:
        image.putpalette([c for rgb in voc_colormap(256) for c in rgb])
    image.save(path)
    return raw


def expected(raw, mapping):
    return np.vectorize(mapping.__getitem__)(raw)


def voc_tree(tmp_path, train_values=(0, 5, 20, 255), deeplab_list=True):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    train, val = ["2007_000032", "2008_000002"], ["2007_000033"]
    lines = [f"/JPEGImages/{n}.jpg /SegmentationClassAug/{n}.png" if deeplab_list else n for n in train]
    (sets / "train_aug.txt").write_text("\n".join(lines) + "\n")
    (sets / "val.txt").write_text("\n".join(val) + "\n")
    for n in train + val:
        write_image(root / "JPEGImages" / f"{n}.jpg")
        write_mask(root / "SegmentationClassAug" / f"{n}.png", train_values, palette=True)
    return root


def test_voc_aug_reads_palette_pngs_as_indices(tmp_path):
    voc_tree(tmp_path)
    dataset = build_dataset("voc_aug", tmp_path, "train")  # root found under VOCdevkit/VOC2012
    assert len(dataset) == 2
    item = dataset[1]
    assert item["name"] == "2008_000002"
    assert item["image"].shape == (H, W, 3) and item["image"].dtype == np.uint8
    assert item["mask"].dtype == np.int64
    np.testing.assert_array_equal(item["mask"], np.resize([0, 5, 20, 255], (H, W)))
    assert [build_dataset("voc_aug", tmp_path, "val")[0]["name"]] == ["2007_000033"]


def test_voc_plain_segmentation_class_and_plain_id_lists(tmp_path):
    root = tmp_path / "VOC2012"
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000033\n")
    write_image(root / "JPEGImages" / "2007_000033.jpg")
    raw = write_mask(root / "SegmentationClass" / "2007_000033.png", [15, 0, 255, 3], palette=True)
    np.testing.assert_array_equal(build_dataset("voc_aug", root, "val")[0]["mask"], raw)


def test_cityscapes_label_ids_map_to_train_ids(tmp_path):
    raw_values = [0, 1, 6, 7, 8, 9, 10, 11, 16, 17, 18, 24, 26, 29, 30, 31, 33, 255]
    mapping = {0: 255, 1: 255, 6: 255, 7: 0, 8: 1, 9: 255, 10: 255, 11: 2, 16: 255, 17: 5, 18: 255, 24: 11,
               26: 13, 29: 255, 30: 255, 31: 16, 33: 18, 255: 255}
    for city, n in [("zurich", "zurich_000000_000019"), ("aachen", "aachen_000001_000019")]:
        pixels = write_image(tmp_path / "leftImg8bit" / "train" / city / f"{n}_leftImg8bit.png")
        raw = write_mask(tmp_path / "gtFine" / "train" / city / f"{n}_gtFine_labelIds.png", raw_values)
    dataset = build_dataset("cityscapes", tmp_path, "train")
    assert [dataset[i]["name"] for i in range(2)] == ["aachen_000001_000019", "zurich_000000_000019"]
    item = dataset[1]
    np.testing.assert_array_equal(item["image"], pixels)  # PNG images are lossless
    np.testing.assert_array_equal(item["mask"], expected(raw, mapping))


def test_pascal_context_ignores_zero_and_shifts_the_59_classes(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2010"
    (root / "ImageSets" / "SegmentationContext").mkdir(parents=True)
    (root / "ImageSets" / "SegmentationContext" / "train.txt").write_text("2008_000002\n")
    write_image(root / "JPEGImages" / "2008_000002.jpg")
    raw = write_mask(root / "SegmentationClassContext" / "2008_000002.png", [0, 1, 30, 59, 255])
    mask = build_dataset("pascal_context", tmp_path, "train")[0]["mask"]
    np.testing.assert_array_equal(mask, expected(raw, {0: 255, 1: 0, 30: 29, 59: 58, 255: 255}))
    with pytest.raises(ValueError, match=r"\[60\]"):
        write_mask(root / "SegmentationClassContext" / "2008_000002.png", [60, 1])
        build_dataset("pascal_context", tmp_path, "train")[0]


def coco_tree(tmp_path, raw_values, converted=False):
    root = tmp_path / "coco_stuff164k"
    n = "000000000139"
    write_image(root / "images" / "val2017" / f"{n}.jpg")
    suffix = "_labelTrainIds.png" if converted else ".png"
    return root, write_mask(root / "annotations" / "val2017" / f"{n}{suffix}", raw_values)


def test_coco_stuff_raw_maps_close_the_id_gaps(tmp_path):
    # raw = COCO category id - 1; 11 (id 12) is unused, so 12 -> 11; 91 -> 80 (first stuff); 181 -> 170
    root, raw = coco_tree(tmp_path, [0, 10, 12, 91, 181, 255])
    item = build_dataset("coco_stuff", tmp_path, "val")[0]
    assert item["name"] == "000000000139"
    np.testing.assert_array_equal(item["mask"], expected(raw, {0: 0, 10: 10, 12: 11, 91: 80, 181: 170, 255: 255}))
    write_mask(root / "annotations" / "val2017" / "000000000139.png", [0, 11, 90, 200])
    with pytest.raises(ValueError, match=r"000000000139\.png: mask values \[11, 90, 200\]"):
        build_dataset("coco_stuff", root, "val")[0]


def test_coco_stuff_converted_train_ids(tmp_path):
    root, raw = coco_tree(tmp_path, [0, 11, 170, 255], converted=True)
    np.testing.assert_array_equal(build_dataset("coco_stuff", root, "val")[0]["mask"], raw)


def test_ade20k_zero_is_ignored(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    write_image(root / "images" / "validation" / "ADE_val_00000001.jpg")
    raw = write_mask(root / "annotations" / "validation" / "ADE_val_00000001.png", [0, 1, 2, 150])
    item = build_dataset("ade20k", tmp_path, "val")[0]
    assert item["name"] == "ADE_val_00000001"
    np.testing.assert_array_equal(item["mask"], expected(raw, {0: 255, 1: 0, 2: 1, 150: 149}))


def test_missing_root_split_list_image_and_mask_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_dataset("voc_aug", tmp_path / "nowhere", "train")
    with pytest.raises(FileNotFoundError, match="JPEGImages"):
        build_dataset("voc_aug", tmp_path, "train")
    root = voc_tree(tmp_path, deeplab_list=False)
    (root / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"val split list not found.*ImageSets/Segmentation/val\.txt"):
        build_dataset("voc_aug", root, "val")
    dataset = build_dataset("voc_aug", root, "train")  # files past the first are checked when read
    (root / "JPEGImages" / "2008_000002.jpg").rename(tmp_path / "moved.jpg")
    with pytest.raises(FileNotFoundError, match=r"image not found: .*JPEGImages/2008_000002\.jpg"):
        dataset[1]
    (tmp_path / "moved.jpg").rename(root / "JPEGImages" / "2008_000002.jpg")
    (root / "SegmentationClassAug" / "2008_000002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"mask not found: .*SegmentationClassAug/2008_000002\.png"):
        dataset[1]
    (root / "SegmentationClassAug" / "2007_000032.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"mask not found: .*SegmentationClassAug/2007_000032\.png"):
        build_dataset("voc_aug", root, "train")  # the first pair is checked up front
    with pytest.raises(FileNotFoundError, match=r"leftImg8bit/val"):
        (tmp_path / "leftImg8bit" / "train").mkdir(parents=True)
        build_dataset("cityscapes", tmp_path, "val")


def test_bad_mask_values_and_formats_name_the_file(tmp_path):
    root = voc_tree(tmp_path, train_values=(0, 21, 100, 255))
    message = r"2007_000032\.png: mask values \[21, 100\] outside the valid set \(0-20, 255\)"
    with pytest.raises(ValueError, match=message):
        build_dataset("voc_aug", root, "train")[0]
    path = root / "SegmentationClassAug" / "2007_000032.png"
    Image.fromarray(np.resize(np.array([3, 300], np.uint16), (H, W))).save(path)  # 16-bit PNG
    with pytest.raises(ValueError, match=r"2007_000032\.png: mask values \[300\]"):
        build_dataset("voc_aug", root, "train")[0]
    Image.new("RGB", (W, H)).save(path)
    with pytest.raises(ValueError, match=r"2007_000032\.png: .*single-channel .* got mode RGB"):
        build_dataset("voc_aug", root, "train")[0]
    Image.new("L", (W + 1, H)).save(path)
    with pytest.raises(ValueError, match=r"is 6x8 but its mask .*2007_000032\.png is 6x9"):
        build_dataset("voc_aug", root, "train")[0]


def test_wsss_label_dir_replaces_training_masks_only(tmp_path):
    root = voc_tree(tmp_path)
    pseudo = tmp_path / "pseudo"
    raw = write_mask(pseudo / "2007_000032.png", [7, 255])
    write_mask(pseudo / "2008_000002.png", [1])
    dataset = build_dataset("voc_aug", root, "train", label_dir=pseudo)
    np.testing.assert_array_equal(dataset[0]["mask"], raw)
    with pytest.raises(ValueError, match="label_dir.*evaluation always uses the ground truth"):
        build_dataset("voc_aug", root, "val", label_dir=pseudo)
    with pytest.raises(FileNotFoundError, match="label_dir not found: .*elsewhere"):
        build_dataset("voc_aug", root, "train", label_dir=tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match=r"mask not found: .*pseudo/2007_000033\.png"):
        (root / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("2007_000033\n")
        build_dataset("voc_aug", root, "train", label_dir=pseudo)


def test_transform_gives_contract_tensors(tmp_path):
    root = voc_tree(tmp_path)
    item = build_dataset("voc_aug", root, "train", transform=eval_transform())[0]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, H, W)
    assert item["mask"].dtype == torch.int64 and item["mask"].shape == (H, W)
    assert "parts" not in item


@pytest.mark.parametrize("name", DATASETS)
def test_every_registered_dataset_describes_itself(name):
    info = dataset_info(name)
    assert info["num_classes"] == len(info["classes"]) == len(set(info["classes"])) == len(info["palette"])
    assert info["ignore_index"] == 255 and "train" in info["splits"]
    assert info["background_index"] == (0 if info["classes"][0] == "background" else None)


def test_registry_names_and_info():
    with pytest.raises(ValueError, match=f"unknown dataset 'voc'; valid: {', '.join(sorted(DATASETS))}"):
        build_dataset("voc", ".", "train")
    with pytest.raises(ValueError, match="unknown split 'training'; valid: train, val"):
        build_dataset("ade20k", ".", "training")
    counts = {"voc_aug": 21, "cityscapes": 19, "pascal_context": 59, "coco_stuff": 171, "ade20k": 150}
    for name, count in counts.items():
        info = dataset_info(name)
        assert info["num_classes"] == len(info["classes"]) == len(info["palette"]) == count
        assert len(set(info["classes"])) == count and info["ignore_index"] == 255
