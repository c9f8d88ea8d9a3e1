"""Weak supervision: ScribbleSup XML scribbles, generated pseudo masks and scribbles, the DenseCRF / DFR loss,
and the supervision sweep axis."""

import copy
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from srlib.sweep import benchmark, cells, run_configs
from srlib.cli import main
from srlib.config import DEFAULTS, merge
from srlib.identity import config_hash
from srlib.data import pascal_context, voc
from srlib.data.common import read_mask
from srlib.data.generated import GeneratedDataset
from srlib.data.pseudo import pseudo_mask
from srlib.data.scribble import convert_scribbles, generated_scribbles, read_scribbles
from srlib.data.weak import build_train_set, label_stats
from srlib.losses import RunLoss
from srlib.losses.dense_crf import densecrf_loss
from tests.test_sweep import BENCH, expanded

FIXTURES = Path(__file__).parent / "fixtures" / "scribbles"
VOC_XML, CONTEXT_XML = FIXTURES / "voc_2007_000032.xml", FIXTURES / "context_2008_000008.xml"


def scribble_mask(xml: Path, dataset: str, tmp_path: Path) -> np.ndarray:
    """One ScribbleSup file through ``convert_scribbles``: the PNG it writes, as a uint8 H x W array."""
    folder = tmp_path / xml.stem
    folder.mkdir()
    shutil.copy(xml, folder)
    convert_scribbles(folder, dataset, folder / "png")
    return np.asarray(Image.open(folder / "png" / f"{xml.stem}.png"))


# ---------------------------------------------------------------- ScribbleSup XML
def test_voc_scribbles_are_3_px_lines_on_255_with_background_0(tmp_path):
    parsed = read_scribbles(VOC_XML)
    assert (parsed["height"], parsed["width"]) == (12, 20)
    assert [tag for tag, _ in parsed["scribbles"]] == ["aeroplane", "background", "tvmonitor"]
    mask = scribble_mask(VOC_XML, "voc_aug", tmp_path)
    assert mask.shape == (12, 20) and mask.dtype == np.uint8
    plane = voc.CLASSES.index("aeroplane")
    assert (mask[3:6, 4:15] == plane).all()  # the horizontal stroke at y = 4, rows 3..5
    assert (mask[[2, 6], 4:15] == 255).all()  # and nothing beyond its 3 px
    assert (mask[8:11, 3:8] == 0).all()  # background stroke: class 0
    assert (mask[8:11, 16:19] == voc.CLASSES.index("tvmonitor")).all()  # a one-point scribble: a 3 x 3 dot
    assert set(np.unique(mask)) == {0, plane, voc.CLASSES.index("tvmonitor"), 255}
    assert (mask == 255).mean() > 0.5


def test_context_scribbles_use_its_raw_encoding_and_read_back_through_its_loader(tmp_path):
    mask = scribble_mask(CONTEXT_XML, "pascal_context", tmp_path)
    assert (mask[2:8, 1:4] == pascal_context.CLASSES.index("horse") + 1).all()
    assert (mask[4:7, 9:12] == pascal_context.CLASSES.index("pottedplant") + 1).all()  # "Potted Plant"
    assert (mask[1:9, 13:16] == 0).all()  # background = raw 0, which the 59-class benchmark ignores
    Image.fromarray(mask, mode="L").save(tmp_path / "x.png")
    labels = read_mask(tmp_path / "x.png", pascal_context.LUT)
    assert labels[3, 2] == pascal_context.CLASSES.index("horse") and labels[5, 14] == 255 and labels[0, 0] == 255


def test_srlib_scribbles_writes_a_label_dir(tmp_path, capsys):
    assert main(["scribbles", str(FIXTURES), "--dataset", "voc_aug", "--out", str(tmp_path)]) == 0
    assert "wrote 2 scribble masks" in capsys.readouterr().out
    labels = read_mask(tmp_path / "voc_2007_000032.png", voc.LUT)
    assert (labels == scribble_mask(VOC_XML, "voc_aug", tmp_path)).all()
    with pytest.raises(FileNotFoundError, match="no scribble XML files in"):
        convert_scribbles(tmp_path, "voc_aug", tmp_path / "out")


def test_bad_scribble_files_are_named(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text(VOC_XML.read_text().replace("aeroplane", "zeppelin"))
    with pytest.raises(ValueError, match=r"bad\.xml.*'zeppelin'"):
        convert_scribbles(tmp_path, "voc_aug", tmp_path / "out")
    bad.write_text("<annotation><polygon><tag>cat</tag></polygon></annotation>")
    with pytest.raises(ValueError, match=r"bad\.xml: no <size>"):
        read_scribbles(bad)
    with pytest.raises(ValueError, match="no scribble tags for dataset 'cityscapes'"):
        convert_scribbles(FIXTURES, "cityscapes", tmp_path / "out")
    bad.write_text(re.sub(r"<width>\d+</width>", "<width>0</width>", VOC_XML.read_text()))
    with pytest.raises(ValueError, match=r"bad\.xml: <size> must be at least 1 x 1 px, got width 0"):
        read_scribbles(bad)


def test_a_bad_scribble_file_leaves_no_mask_written(tmp_path):
    xml_dir, out = tmp_path / "xml", tmp_path / "out"
    xml_dir.mkdir()
    (xml_dir / "a.xml").write_text(VOC_XML.read_text())
    (xml_dir / "b.xml").write_text(VOC_XML.read_text().replace("aeroplane", "zeppelin"))
    with pytest.raises(ValueError, match=r"b\.xml.*'zeppelin'"):
        convert_scribbles(xml_dir, "voc_aug", out)
    assert not out.exists() or not any(out.iterdir())


# ---------------------------------------------------------------- generated weak labels
@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A tiny generated dataset (48 px, 8 training images)."""
    from srlib.data.synth import generate

    root = tmp_path_factory.mktemp("weak") / "generated"
    generate(root, seed=0, size=48, n_train=8, n_val=1, n_test=1)
    return root


def _truth(data_root, i=0):
    return GeneratedDataset(data_root, "train")[i]


def test_pseudo_masks_are_deterministic_and_degrade_with_noise(data_root, capsys):
    item = _truth(data_root)
    first = pseudo_mask(item["mask"], item["parts"], item["name"], 0.4)
    assert (first == pseudo_mask(item["mask"], item["parts"], item["name"], 0.4)).all()
    assert (pseudo_mask(item["mask"], item["parts"], item["name"], 0.0) == item["mask"]).all()
    scores = [label_stats(data_root, "pseudo", noise)["miou"] for noise in (0.0, 0.4, 1.0)]
    assert scores[0] == 1.0 and scores[0] > scores[1] > scores[2]
    assert main(["weak-labels", str(data_root), "--noise", "1.0"]) == 0
    assert json.loads(capsys.readouterr().out)["miou"] == scores[2]
    with pytest.raises(ValueError, match="noise must be in"):
        pseudo_mask(item["mask"], item["parts"], item["name"], 1.5)


def test_default_pseudo_masks_score_like_cam_seeds(tmp_path_factory):
    from srlib.data.synth import generate

    root = tmp_path_factory.mktemp("weak128") / "generated"
    generate(root, seed=0, size=128, n_train=24, n_val=1, n_test=1)
    stats = label_stats(root, "pseudo", DEFAULTS["data"]["pseudo_noise"])
    assert 0.55 <= stats["miou"] <= 0.75, stats
    assert stats["thin_part_iou"] < 0.5 * stats["miou"]  # thin parts are what CAM seeds miss most
    scribbles = label_stats(root, "scribble", 0.0)
    assert scribbles["miou"] == 1.0 and 0.015 <= scribbles["labelled_fraction"] <= 0.06, scribbles


def test_generated_scribbles_are_correct_where_drawn_and_cover_every_class(data_root):
    for i in range(4):
        item = _truth(data_root, i)
        scribbles = generated_scribbles(item["mask"], item["name"])
        drawn = scribbles != 255
        assert (scribbles[drawn] == item["mask"][drawn]).all()
        assert set(np.unique(scribbles[drawn])) == set(np.unique(item["mask"]))
        assert (scribbles == generated_scribbles(item["mask"], item["name"])).all()


def test_training_set_takes_weak_labels_and_real_datasets_need_a_label_dir(data_root):
    data = merge(DEFAULTS["data"], {"root": str(data_root), "supervision": "scribble"})
    item = build_train_set(data)[0]
    assert (item["mask"] == 255).mean() > 0.8
    assert (build_train_set({**data, "supervision": "full"})[0]["mask"] != 255).all()
    with pytest.raises(ValueError, match="data.supervision is 'scribble' but data.label_dir is not set"):
        build_train_set({**data, "name": "voc_aug"})


# ---------------------------------------------------------------- DenseCRF / DFR loss
def _dense_reference(logits, rgb, feats, sigma_rgb, sigma_xy, sigma_feat):
    """sum_k S_k^T W (1 - S_k) / (B h w) with the full N x N kernel (float64, at the image's own resolution)."""
    probs = logits.double().softmax(1)
    b, k, h, w = probs.shape
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    total = 0
    for i in range(b):
        parts = [torch.stack([yy, xx]).reshape(2, -1).double() / sigma_xy, rgb[i].reshape(3, -1).double() / sigma_rgb]
        if feats is not None:
            parts.append(F.normalize(feats[i].double(), dim=0).reshape(feats.shape[1], -1) / sigma_feat)
        f = torch.cat(parts).T
        kernel = torch.exp(-torch.cdist(f, f) ** 2 / 2)
        s = probs[i].reshape(k, -1)
        total = total + sum(s[c] @ kernel @ (1 - s[c]) for c in range(k))
    return total / (b * h * w)


@pytest.mark.parametrize("with_feats", [False, True], ids=["densecrf", "dfr"])
def test_densecrf_loss_matches_the_dense_kernel_when_the_window_covers_the_image(with_feats):
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, 7, requires_grad=True)
    rgb = torch.rand(2, 3, 6, 7) * 255
    feats = torch.randn(2, 5, 6, 7) if with_feats else None
    ours = densecrf_loss(logits, rgb, sigma_rgb=40.0, sigma_xy=3.0, scale=1.0, radius=7, feats=feats,
                         sigma_feat=0.8, feat_dims=5)
    reference = _dense_reference(logits, rgb, feats, 40.0, 3.0, 0.8)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)
    grad, = torch.autograd.grad(ours, logits)
    expected, = torch.autograd.grad(reference, logits)
    torch.testing.assert_close(grad, expected.float(), rtol=1e-4, atol=1e-6)


def test_a_sampled_window_approximates_the_full_one_and_needs_a_matching_radius():
    torch.manual_seed(0)
    logits = F.interpolate(torch.randn(1, 3, 4, 4), size=(32, 32), mode="bilinear")  # smooth, like a network's
    rgb = torch.rand(1, 3, 1, 1).expand(1, 3, 32, 32) * 255
    full = densecrf_loss(logits, rgb, sigma_xy=4.0, scale=1.0, radius=8, stride=1)
    sampled = densecrf_loss(logits, rgb, sigma_xy=4.0, scale=1.0, radius=8, stride=2)
    assert sampled.item() == pytest.approx(full.item(), rel=0.05)
    with pytest.raises(ValueError, match="multiple of stride"):
        densecrf_loss(logits, rgb, scale=1.0, radius=7, stride=2)


def test_the_regularizer_trains_unlabelled_pixels_from_the_unnormalised_image():
    from srlib.data.transforms import normalize

    torch.manual_seed(0)
    head = torch.randn(2, 3, 4, 4, requires_grad=True)
    out = {"seg": [head], "head_feats": torch.randn(2, 8, 4, 4)}
    target = torch.full((2, 16, 16), 255)  # nothing labelled: partial CE is 0, the regularizer still acts
    images = torch.stack([normalize(torch.rand(3, 16, 16)) for _ in range(2)])
    for regularizer in ("densecrf", "dfr"):
        loss_cfg = merge(DEFAULTS["loss"], {"regularizer": regularizer, "rloss": {"sigma_xy": 8.0, "scale": 0.5,
                                                                                   "stride": 1}})
        terms = RunLoss(loss_cfg, {"num_classes": 3, "background_index": 0})(out, target, images=images)
        assert terms["seg"].item() == 0 and terms["rloss"].item() > 0
        grad, = torch.autograd.grad(terms["total"], head)
        assert grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs the batch's images"):
        RunLoss(loss_cfg, {"num_classes": 3, "background_index": 0})(out, target)


# ---------------------------------------------------------------- the sweep axis
def test_supervision_axis_crosses_the_dataset_axis_in_paths_and_configs():
    bench = copy.deepcopy(BENCH)
    bench["axes"]["supervision"] = ["full", "scribble+densecrf"]
    swept = expanded(bench)
    assert swept["axes"]["dataset"] == ["generated@full", "generated@scribble+densecrf"]
    assert len(swept["runs"]) == 2 * len(expanded(BENCH)["runs"])
    run_dir = next(d for d in swept["run_dirs"] if "scribble" in d)
    assert run_dir.startswith("results/unit/runs/dataset~generated@scribble+densecrf/preset~")
    assert cells.path_axes(run_dir)["dataset"] == "generated@scribble+densecrf"
    configs = {run["dataset"]: run_configs.run_config(swept, run) for run in swept["runs"]}
    assert configs["generated@scribble+densecrf"]["data"]["supervision"] == "scribble"
    assert configs["generated@scribble+densecrf"]["loss"]["regularizer"] == "densecrf"
    assert configs["generated@full"]["data"]["supervision"] == "full"
    plain = run_configs.run_config(expanded(BENCH), expanded(BENCH)["runs"][0])
    assert "supervision" not in plain["data"] and "regularizer" not in plain["loss"]


def test_weak_labels_of_a_real_dataset_need_their_folder(tmp_path):
    bench = copy.deepcopy(BENCH)
    bench["axes"]["dataset"] = [{"name": "voc_aug", "root": str(tmp_path), "scribble_dir": str(tmp_path / "s")}]
    bench["axes"]["supervision"] = ["scribble"]
    swept = expanded(bench)
    assert run_configs.run_config(swept, swept["runs"][0])["data"]["label_dir"] == str(tmp_path / "s")
    bench["axes"]["supervision"] = ["pseudo"]
    with pytest.raises(benchmark.BenchmarkError, match="needs `pseudo_dir`"):
        expanded(bench)
    bench["base"] = {"data": {"supervision": "pseudo"}}
    with pytest.raises(benchmark.BenchmarkError,
                       match="base.data.supervision: set by the benchmark's axes.supervision"):
        expanded(bench)


def test_fully_supervised_runs_hash_as_before_the_weak_keys():
    cfg = copy.deepcopy(DEFAULTS)
    legacy = copy.deepcopy(cfg)
    for section, key in (("data", "supervision"), ("data", "pseudo_noise"), ("loss", "regularizer"), ("loss", "rloss")):
        del legacy[section][key]
    assert config_hash(cfg) == config_hash(legacy)
    assert config_hash(merge(cfg, {"data": {"supervision": "pseudo"}})) != config_hash(cfg)
    pseudo = merge(cfg, {"data": {"supervision": "pseudo"}})
    assert config_hash(merge(pseudo, {"data": {"pseudo_noise": 0.1}})) != config_hash(pseudo)
