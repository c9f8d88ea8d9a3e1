"""U-shape (unet, fpn) and OCR heads: exit placement, which exit teaches which, gradients, the auxiliary term."""

import itertools
import json

import pytest
import torch

from srlib.cli import main
from srlib.config import ConfigError
from srlib.registries import resolve_config
from srlib.losses import RunLoss
from srlib.losses.self_regulation import VARIANTS, self_regulation_loss
from srlib.models import HEADS, PRESETS, build_segmentor
from srlib.rundir.record import read_history
from srlib.wiring import check_wiring, plain_wiring, ushape_wiring

NUM_CLASSES = 3
SIZE = 64
# test_resnet: stage widths 32, 32, 48, 192, 96 at strides 2, 4, 8, 16, 32 (output stride 32, undilated)


def batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 3, SIZE, SIZE, generator=generator)
    masks = torch.randint(0, NUM_CLASSES, (2, SIZE, SIZE), generator=generator)
    masks[:, :4] = 255
    return images, masks


def model(head: str, **kwargs):
    torch.manual_seed(0)
    args = {"exit_type": "light", "output_stride": 32, "classify": True, **kwargs}
    return build_segmentor("test_resnet", head, NUM_CLASSES, **args).train()


def strides(out: dict) -> list[int]:
    return [SIZE // z.shape[-1] for z in out["seg"]]


# ---- where the exits sit and which exit teaches which -------------------------------------------------------------


@pytest.mark.parametrize("head,exit_strides,wiring", [
    # encoder exits E1..E5 (strides 2..32), decoder blocks 16, 8, 4 (deepest first), the head: final block at 2
    ("unet", [2, 4, 8, 16, 32, 16, 8, 4, 2],
     {"srf_teacher": 0, "srf_students": [1, 2, 3, 4], "srl_teacher": 8, "srl_students": [5, 6, 7]}),
    # pyramid levels 32, 16, 8, 4 (deepest first), the head: their fusion at stride 4
    ("fpn", [2, 4, 8, 16, 32, 32, 16, 8, 4, 4],
     {"srf_teacher": 0, "srf_students": [1, 2, 3, 4], "srl_teacher": 9, "srl_students": [5, 6, 7, 8]}),
    # a plain head: exits on the stages below the last, the authors' wiring
    ("ocr", [2, 4, 8, 16, 32],
     {"srf_teacher": 0, "srf_students": [1, 2, 3, 4], "srl_teacher": 4, "srl_students": [0, 1, 2, 3]}),
])
def test_exits_and_wiring_as_figure_3_draws_them(head, exit_strides, wiring):
    out = model(head)(batch()[0])
    assert strides(out) == exit_strides
    assert out["wiring"] == wiring


def test_wiring_options_widen_the_students():
    out = model("unet", srf_reaches_decoder=True, srl_reaches_encoder=True)(batch()[0])
    assert out["wiring"] == {"srf_teacher": 0, "srf_students": [1, 2, 3, 4, 5, 6, 7, 8],
                             "srl_teacher": 8, "srl_students": [0, 1, 2, 3, 4, 5, 6, 7]}
    skip_stem = model("unet", min_exit_stride=4)(batch()[0])  # the decoder keeps its stride-2 block and exits
    assert strides(skip_stem) == [4, 8, 16, 32, 16, 8, 4, 2]
    assert skip_stem["wiring"] == ushape_wiring(4, 3) and skip_stem["wiring"]["srf_teacher"] == 0


def _reach(out: dict, target: torch.Tensor, term: str, key: str, variant: str) -> tuple[set, set]:
    """(exits whose ``key`` tensor gets gradient from ``term``, exits whose ``key`` tensor changes ``term``)."""
    flags = {"mea": False, "srf": term == "srf", "srl": term == "srl"}
    kwargs = dict(variant=variant, num_classes=NUM_CLASSES, **flags)
    leaves = {k: [x.detach().clone().requires_grad_() for x in out[k]] for k in ("seg", "cls", "feats")}
    value = self_regulation_loss({**out, **leaves}, target, **kwargs)[term]
    grads = torch.autograd.grad(value, leaves[key], allow_unused=True)
    learns = {i for i, g in enumerate(grads) if g is not None and g.abs().sum() > 0}
    moves = set()
    for i in range(len(leaves[key])):
        shifted = [x + 3 * torch.randn_like(x) if j == i else x for j, x in enumerate(leaves[key])]
        if not torch.equal(self_regulation_loss({**out, **leaves, key: shifted}, target, **kwargs)[term], value):
            moves.add(i)
    return learns, moves


@pytest.mark.parametrize("head,options", [("unet", {}), ("fpn", {}), ("unet", {"srf_reaches_decoder": True,
                                                                               "srl_reaches_encoder": True})])
@pytest.mark.parametrize("variant", VARIANTS)
def test_each_term_distils_its_teacher_into_its_students_and_nothing_else(head, options, variant):
    """Pinned by behaviour: a student's tensor gets gradient from the term; the teacher's changes the term but gets
    no gradient from it; no other exit plays any part."""
    net = model(head, feature_proj_dim=4, **options)
    with torch.no_grad():
        out = net(batch()[0])
    target = batch()[1]
    wiring = out["wiring"]
    srf_key = "feats" if variant == "paper-features" else "seg"
    for term, key in (("srf", srf_key), ("srl", "cls")):
        learns, moves = _reach(out, target, term, key, variant)
        assert learns == set(wiring[f"{term}_students"]), term
        assert moves == learns | {wiring[f"{term}_teacher"]}, term


# ---- the baseline, gradients, the auxiliary classifier -------------------------------------------------------------


@pytest.mark.parametrize("head", ["unet", "fpn", "ocr"])
def test_the_baseline_is_the_whole_decoder_without_exits(head):
    baseline = model(head, exit_type=None, classify=False)
    out = baseline(batch()[0])
    assert len(out["seg"]) == 1 and "wiring" not in out
    multi = model(head, feature_proj_dim=4)
    assert set(baseline.state_dict()) == set(multi.inference_model().state_dict())
    assert all(name.startswith(("backbone.", "head.")) for name in baseline.state_dict())


@pytest.mark.parametrize("head", ["unet", "fpn", "ocr"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_full_sr_gradients_reach_every_exit_and_classifier(head, variant):
    net = model(head, feature_proj_dim=4)
    images, target = batch()
    out = net(images)
    terms = self_regulation_loss(out, target, mea=True, srf=True, srl=True, variant=variant, num_classes=NUM_CLASSES)
    terms["total"].backward()
    for part in ("exits", "classifiers", "head"):
        params = list(getattr(net, part).parameters())
        assert params and all(p.grad is not None and p.grad.abs().sum() > 0 for p in params if p.dim() > 1), part
    assert net.param_groups()["backbone"][0].grad.abs().sum() > 0  # the stem (timm zero-inits residual branches)
    learning = [any(p.grad is not None and p.grad.abs().sum() > 0 for p in project.parameters())
                for project in net.projections]  # projected features: only SR-F's students, in paper-features
    students = out["wiring"]["srf_students"]
    assert learning == [variant == "paper-features" and i in students for i in range(len(learning))]


def test_ocr_aux_classifier_is_trained_in_every_cell_with_weight_0_4():
    net = model("ocr", exit_type=None, classify=False)
    images, target = batch()
    loss_cfg = resolve_config({})["loss"]
    out = net(images)
    terms = RunLoss(loss_cfg, {"num_classes": NUM_CLASSES, "background_index": 0})(out, target)
    aux = torch.nn.functional.interpolate(out["aux"]["seg"], size=(SIZE, SIZE), mode="bilinear")
    expected = torch.nn.functional.cross_entropy(aux, target, ignore_index=255)
    assert torch.allclose(terms["aux"], expected, atol=1e-5)
    assert torch.allclose(terms["total"], terms["seg"] + 0.4 * terms["aux"])
    terms["total"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.head.aux.parameters() if p.dim() > 1)


# ---- plain models unchanged, bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("head", ["fcn", "deeplabv3"])
def test_plain_models_carry_the_default_wiring_and_give_the_same_terms_without_it(head):
    out = model(head, output_stride=8, feature_proj_dim=4)(batch()[0])
    assert out["wiring"] == plain_wiring(len(out["seg"]))
    bare = {key: value for key, value in out.items() if key != "wiring"}
    for variant in VARIANTS:
        kwargs = dict(mea=True, srf=True, srl=True, variant=variant, num_classes=NUM_CLASSES)
        with_wiring = self_regulation_loss(out, batch()[1], **kwargs)
        without = self_regulation_loss(bare, batch()[1], **kwargs)
        assert all(torch.equal(with_wiring[name], without[name]) for name in with_wiring), variant


@pytest.mark.parametrize("wiring,message", [
    ({"srf_teacher": 0, "srf_students": [1]}, r"lacks \['srl_teacher', 'srl_students'\]"),
    ({**plain_wiring(3), "srf_students": [1, 3]}, r"'srf_students'\] = \[1, 3\]: need exit indices 0\.\.2"),
    ({**plain_wiring(3), "srl_teacher": 1.0}, r"'srl_teacher'\] = 1\.0"),
    ({**plain_wiring(3), "srl_students": [0, 2]}, r"'srl_students'\] = \[0, 2\]: each exit once, never the teacher 2"),
    ({**plain_wiring(3), "srf_students": []}, r"'srf_students'\] is empty: SR-F has no student"),
])
def test_a_bad_wiring_is_named(wiring, message):
    with pytest.raises(ValueError, match=message):
        check_wiring(wiring, 3, srf=True, srl=True)


def test_wiring_options_on_a_plain_head_are_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"'loss.srl_reaches_encoder' is true but head 'fcn' has no decoder blocks"
                                          r" \(U-shape heads: fpn, unet\)"):
        resolve_config({"model": {"preset": "fcn_mobilenetv2_100"}, "loss": {"srl_reaches_encoder": True}})
    with pytest.raises(ValueError, match="head 'ocr' has no decoder blocks"):
        build_segmentor("test_resnet", "ocr", NUM_CLASSES, srf_reaches_decoder=True)
    resolve_config({"model": {"preset": "fcn_mobilenetv2_100", "head": "unet"}, "loss": {"srf_reaches_decoder": True}})


def test_presets_put_every_new_head_on_both_backbones_with_shipped_weights():
    for head, backbone in itertools.product(["unet", "fpn", "ocr"], ["mobilenetv2_100", "tf_efficientnet_lite0"]):
        (name,) = [n for n, p in PRESETS.items() if p["head"] == head and p["backbone"] == backbone]
        assert PRESETS[name]["output_stride"] == (8 if head == "ocr" else 32), name
        assert HEADS[head].multi_stage == (head != "ocr")


# ---- a run end to end ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset,terms", [("unet_mobilenetv2_100", {"srf", "srl"}), ("ocr_mobilenetv2_100", {"aux"})])
def test_a_run_trains_and_evaluates_end_to_end(config, tmp_path, preset, terms):
    out = tmp_path / "run"
    overrides = [f"model.preset={preset}", "tracking.enabled=false", "optim.iters=4", "run.log_every=1"]
    assert main(["run", str(config), *[arg for o in overrides for arg in ("--set", o)], "--out", str(out)]) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "FINISHED" and record["axes"]["preset"] == preset
    assert 0 <= record["metrics"]["miou"] <= 1
    assert record["cost"]["params_train"] > record["cost"]["params_test"]
    logged = {name.removeprefix("loss_unweighted/") for point in read_history(out) for name in point["metrics"]}
    assert terms <= logged
