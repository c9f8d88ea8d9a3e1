"""Self-Regulation loss terms: hand-computed values, gradient flow, ignore pixels, bad input.

Expected numbers are written out from the definitions in srlib.losses.self_regulation's docstring, with
logits chosen so that softmax / sigmoid give simple fractions (e.g. logits (0, ln 3) -> probabilities
(1/4, 3/4)).
"""

import itertools
import math

import pytest
import torch

from srlib.losses.self_regulation import (
    FEATURE_EPS,
    VARIANTS,
    check_labels,
    check_loss_args,
    presence_labels,
    self_regulation_loss,
)
from srlib.models import build_segmentor

LN2, LN3, LN4, LN43 = math.log(2), math.log(3), math.log(4), math.log(4 / 3)
FLAGS = dict(mea=False, srf=False, srl=False)


def pixels(*logits) -> torch.Tensor:
    """1 x C x 1 x P logits from one C-tuple per pixel."""
    return torch.tensor(logits, dtype=torch.float32).T[None, :, None, :].contiguous()


def label(*values) -> torch.Tensor:
    """1 x 1 x P label row."""
    return torch.tensor([[values]])


def loss(out, target, variant="paper", num_classes=2, **kwargs):
    kwargs = {**FLAGS, **kwargs}
    return self_regulation_loss(out, target, variant=variant, num_classes=num_classes, **kwargs)


def close(value: torch.Tensor, expected: float) -> bool:
    return math.isclose(value.item(), expected, rel_tol=1e-5, abs_tol=1e-6)


# ---- baseline and MEA ------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_baseline_is_ignore_aware_ce_of_head_only_and_same_in_every_variant(variant):
    target = label(0, 1, 255)
    head = pixels((0, LN3), (0, LN3), (7, -7))  # pixel 3 is void: ignored
    shallow = pixels((9, 0), (-9, 0), (0, 0))  # exits below N play no part in the baseline
    terms = loss({"seg": [shallow, head], "cls": [], "feats": []}, target, variant)
    assert set(terms) == {"seg", "seg_head", "total"}
    expected = (LN4 + LN43) / 2  # CE(label 0) = ln(1 + 3), CE(label 1) = ln(1 + 1/3)
    assert close(terms["seg"], expected) and close(terms["total"], expected)  # weight 1.0, not w_seg


def test_logits_are_upsampled_bilinearly_without_align_corners():
    b = 4 * LN3
    head = torch.tensor([[0.0, 0.0], [0.0, b]])[None, :, None, :]  # class-1 logit row (0, b)
    # align_corners=False, 2 -> 4: class-1 logits (0, b/4, 3b/4, b) = (0, ln3, 3 ln3, 4 ln3)
    expected = (math.log(2) + math.log(4) + math.log(28) + math.log(82)) / 4
    assert close(loss({"seg": [head]}, label(0, 0, 0, 0))["seg"], expected)


@pytest.mark.parametrize("variant", VARIANTS)
def test_mea_sums_seg_and_cls_over_exits_with_presence_per_variant(variant):
    target = label(1, 1, 255)
    out = {
        "seg": [pixels((0, 0), (0, 0), (0, 0)), pixels((0, LN3), (0, LN3), (0, LN3))],
        "cls": [torch.tensor([[0.0, 0.0]]), torch.tensor([[LN3, LN3]])],  # sigmoid: 1/2, 3/4
        "feats": [],
    }
    terms = loss(out, target, variant, mea=True)
    seg = LN2 + LN43
    if variant == "official":  # void counts as background: presence (1, 1)
        cls = LN2 + LN43
    else:  # void ignored: presence (0, 1); BCE(3/4, 0) = ln 4, BCE(3/4, 1) = ln 4/3
        cls = LN2 + (LN4 + LN43) / 2
    assert close(terms["seg"], seg) and close(terms["cls"], cls)
    assert close(terms["total"], 0.8 * seg + 0.2 * cls)


def test_presence_labels_count_void_as_background_only_in_official():
    target = torch.tensor([[[1, 255], [1, 1]], [[0, 2], [2, 2]]])
    official = presence_labels(target, 3, void_as_background=True)
    paper = presence_labels(target, 3, void_as_background=False)
    assert official.tolist() == [[1, 1, 0], [1, 0, 1]]
    assert paper.tolist() == [[0, 1, 0], [1, 0, 1]]


def test_official_skips_void_in_presence_when_class_0_is_not_background():
    # Cityscapes / Context-59: class 0 is a real class (road, aeroplane), so void must not make it present.
    target = label(1, 1, 255)
    out = {"seg": [pixels((0, 0), (0, 0), (0, 0))] * 2, "cls": [torch.tensor([[LN3, LN3]])] * 2, "feats": []}
    with_background = loss(out, target, "official", mea=True)["cls"]
    without = self_regulation_loss(out, target, mea=True, srf=False, srl=False, variant="official",
                                   num_classes=2, has_background=False)["cls"]
    paper = loss(out, target, "paper", mea=True)["cls"]
    assert close(without, paper) and not close(without, with_background)


def test_custom_pixel_loss_gets_every_exit_at_label_size():
    seen = []

    def pixel_loss(logits, target):
        seen.append(tuple(logits.shape))
        return logits.new_tensor(1.5)

    seg = [torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 1, 1), torch.zeros(1, 2, 4, 4)]
    out = {"seg": seg, "cls": [torch.zeros(1, 2)] * 3}
    terms = loss(out, torch.zeros(1, 4, 4, dtype=torch.long), mea=True, pixel_loss=pixel_loss)
    assert seen == [(1, 2, 4, 4)] * 3 and close(terms["seg"], 4.5)


# ---- SR-F -----------------------------------------------------------------------------------


def test_srf_official_is_ce_against_argmax_of_exit1_on_all_pixels():
    target = label(0, 255)
    out = {"seg": [pixels((1, 0), (0, 1)), pixels((0, LN3), (0, LN3)), pixels((0, 0), (0, 0))]}
    terms = loss(out, target, "official", srf=True)
    # pseudo-label (0, 1), void pixel included; student 2: (ln 4 + ln 4/3) / 2, student 3: ln 2
    assert close(terms["srf"], (LN4 + LN43) / 2 + LN2)
    assert close(terms["seg"], LN2)


def test_srf_paper_is_tau2_soft_ce_over_valid_pixels():
    target = label(0, 255, 1)
    teacher = pixels((0, 2 * LN3), (5, -7), (0, 0))  # /tau: softmax (1/4, 3/4), -, (1/2, 1/2)
    student = pixels((2 * LN3, 0), (-3, 9), (2 * LN3, 0))  # /tau: -log softmax (ln 4/3, ln 4)
    out = {"seg": [teacher, student, torch.zeros(1, 2, 1, 3)]}
    terms = loss(out, target, "paper", srf=True, tau=2.0)
    student2 = ((LN43 / 4 + 3 * LN4 / 4) + (LN43 + LN4) / 2) / 2
    assert close(terms["srf"], 4 * (student2 + LN2))  # student 3 (uniform) gives ln 2


def test_srf_paper_features_compares_projected_features_at_exit1_resolution():
    target = label(0, 255, 255, 0)  # nearest to width 2 -> (0, 255); bilinear would give neither
    f1 = torch.tensor([[0.0, 9.0], [0.0, -9.0], [0.0, 1.0]])[None, :, None, :]  # D=3, 1 x 2
    f2 = torch.tensor([0.0, 0.0, LN2])[None, :, None, None]  # 1 x 1, upsampled to 1 x 2
    out = {"seg": [torch.zeros(1, 2, 1, 4)] * 2, "feats": [f1, f2]}
    terms = loss(out, target, "paper-features", srf=True)
    # teacher uniform (1/3 each); student -log softmax = (ln 4, ln 4, ln 2)
    assert close(terms["srf"], (2 * LN4 + LN2) / 3)


# ---- SR-L -----------------------------------------------------------------------------------


def test_srl_official_is_bce_against_sigmoid_of_head_class_logits():
    cls = [torch.tensor([[0.0, 0.0]]), torch.tensor([[LN3, LN3]]), torch.tensor([[0.0, LN3]])]
    out = {"seg": [torch.zeros(1, 2, 1, 1)] * 3, "cls": cls}
    terms = loss(out, label(0), "official", srl=True)
    # targets sigmoid(c_N) = (1/2, 3/4); student 1 p = 1/2 -> ln 2 per class;
    # student 2 p = 3/4: BCE vs 1/2 = (ln 4/3 + ln 4)/2, BCE vs 3/4 = 3/4 ln 4/3 + 1/4 ln 4
    student2 = ((LN43 + LN4) / 2 + (3 * LN43 + LN4) / 4) / 2
    assert close(terms["srl"], LN2 + student2)


@pytest.mark.parametrize("variant", ["paper", "paper-features"])
def test_srl_paper_is_tau2_soft_ce_over_class_distributions(variant):
    student = torch.tensor([[2 * LN3, 0.0], [2 * LN3, 0.0]])
    teacher = torch.tensor([[0.0, 2 * LN3], [0.0, 0.0]])
    out = {"seg": [torch.zeros(2, 2, 1, 1)] * 2, "cls": [student, teacher]}
    terms = loss(out, torch.zeros(2, 1, 1, dtype=torch.long), variant, srl=True, tau=2.0)
    per_image = [LN43 / 4 + 3 * LN4 / 4, (LN43 + LN4) / 2]  # teachers (1/4, 3/4) and (1/2, 1/2)
    assert close(terms["srl"], 4 * sum(per_image) / 2)


def test_total_weights_every_active_term():
    torch.manual_seed(0)
    out = {"seg": [torch.randn(2, 3, 4, 4) for _ in range(3)], "cls": [torch.randn(2, 3) for _ in range(3)]}
    target = torch.randint(0, 3, (2, 8, 8))
    weights = dict(w_seg=0.3, w_cls=0.7, w_srf=2.0, w_srl=0.25)
    t = loss(out, target, "paper", 3, mea=True, srf=True, srl=True, **weights)
    expected = 0.3 * t["seg"] + 0.7 * t["cls"] + 2.0 * t["srf"] + 0.25 * t["srl"]
    assert set(t) == {"seg", "seg_head", "cls", "srf", "srl", "srf_gap", "srl_gap", "total"}
    assert close(t["total"], expected.item())


@pytest.mark.parametrize("variant", VARIANTS)
def test_bfloat16_outputs_give_float32_terms(variant):
    torch.manual_seed(0)
    out = {key: [torch.randn(*shape).bfloat16() for _ in range(3)]
           for key, shape in [("seg", (2, 3, 4, 4)), ("cls", (2, 3)), ("feats", (2, 4, 4, 4))]}  # fmt: skip
    terms = loss(out, torch.randint(0, 3, (2, 8, 8)), variant, 3, mea=True, srf=True, srl=True)
    assert all(term.dtype == torch.float32 for term in terms.values())


@pytest.mark.parametrize("variant", VARIANTS)
def test_terms_inside_an_autocast_region_are_the_float32_terms(variant):
    # A training loop that computes the loss inside its bf16 autocast region gets the same float32 terms and
    # gradients as one that leaves the region first (autocast would otherwise run the upsampling in bf16).
    torch.manual_seed(0)
    shapes = [("seg", (2, 3, 4, 4)), ("cls", (2, 3)), ("feats", (2, 4, 4, 4))]
    out = {key: [torch.randn(*shape).bfloat16().requires_grad_() for _ in range(3)] for key, shape in shapes}
    target = torch.randint(0, 3, (2, 16, 16))
    plain = loss(out, target, variant, 3, mea=True, srf=True, srl=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = loss(out, target, variant, 3, mea=True, srf=True, srl=True)
    assert all(inside[name].dtype == torch.float32 and torch.equal(inside[name], plain[name]) for name in plain)
    leaves = [z for key, _ in shapes for z in out[key]]
    expected = torch.autograd.grad(plain["total"], leaves, allow_unused=True)
    got = torch.autograd.grad(inside["total"], leaves, allow_unused=True)
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(expected, got))


# ---- gradients --------------------------------------------------------------------------------


def _leaves(*shapes):
    torch.manual_seed(0)
    return [torch.randn(*s, requires_grad=True) for s in shapes]


def _assert_teacher_only_is_frozen(term, teacher, students):
    grads = torch.autograd.grad(term, [teacher, *students], allow_unused=True)
    assert grads[0] is None or not grads[0].any(), "teacher got gradient from the term it teaches"
    for grad in grads[1:]:
        assert grad is not None and grad.abs().sum() > 0, "a student got no gradient"


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_srf_teacher_exit1_gets_no_gradient_students_do(variant):
    z1, z2, z3 = _leaves((2, 3, 4, 4), (2, 3, 2, 2), (2, 3, 8, 8))
    target = torch.randint(0, 3, (2, 8, 8))
    terms = loss({"seg": [z1, z2, z3]}, target, variant, 3, srf=True)
    _assert_teacher_only_is_frozen(terms["srf"], z1, [z2, z3])


def test_srf_features_teacher_f1_gets_no_gradient_students_do():
    f1, f2, f3 = _leaves((2, 5, 4, 4), (2, 5, 2, 2), (2, 5, 1, 1))
    out = {"seg": [torch.zeros(2, 3, 4, 4)] * 3, "feats": [f1, f2, f3]}
    terms = loss(out, torch.randint(0, 3, (2, 8, 8)), "paper-features", 3, srf=True)
    _assert_teacher_only_is_frozen(terms["srf"], f1, [f2, f3])


@pytest.mark.parametrize("variant", VARIANTS)
def test_srl_teacher_head_class_logits_get_no_gradient_students_do(variant):
    c1, c2, c3 = _leaves((2, 3), (2, 3), (2, 3))
    out = {"seg": [torch.zeros(2, 3, 2, 2)] * 3, "cls": [c1, c2, c3]}
    terms = loss(out, torch.randint(0, 3, (2, 4, 4)), variant, 3, srl=True)
    _assert_teacher_only_is_frozen(terms["srl"], c3, [c1, c2])


# ---- ignore pixels ----------------------------------------------------------------------------


def _all_terms_out(seed):
    torch.manual_seed(seed)
    seg = [torch.randn(2, 3, 6, 6) for _ in range(3)]  # at label size: no bilinear mixing
    feats = [torch.randn(2, 4, 6, 6) for _ in range(3)]
    return {"seg": seg, "cls": [torch.randn(2, 3) for _ in range(3)], "feats": feats}


def _scramble_void(out, void):
    """Copy of ``out`` with every seg / feature value at void pixels replaced by noise."""
    scrambled = dict(out)
    for key in ("seg", "feats"):
        scrambled[key] = [torch.where(void[:, None], 50 * torch.randn_like(x), x) for x in out[key]]
    return scrambled


@pytest.mark.parametrize("variant", ["paper", "paper-features"])
def test_ignore_pixels_contribute_nothing_in_paper_variants(variant):
    target = torch.randint(0, 3, (2, 6, 6))
    target[:, :2] = 255
    out = _all_terms_out(1)
    flags = dict(mea=True, srf=True, srl=True)
    before = loss(out, target, variant, 3, **flags)
    after = loss(_scramble_void(out, target == 255), target, variant, 3, **flags)
    for name in before:
        assert torch.allclose(before[name], after[name], atol=1e-6), name


def test_official_srf_counts_void_pixels_but_seg_ignores_them():
    target = torch.randint(0, 3, (2, 6, 6))
    target[:, :2] = 255
    out = _all_terms_out(2)
    before = loss(out, target, "official", 3, mea=True, srf=True)
    after = loss(_scramble_void(out, target == 255), target, "official", 3, mea=True, srf=True)
    assert torch.allclose(before["seg"], after["seg"], atol=1e-6)
    assert not torch.allclose(before["srf"], after["srf"])


# ---- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(variant="paper_features"), "'paper_features'.*official, paper, paper-features"),
        (dict(tau=0.0), "tau.*0.0"),
        (dict(tau=-1), "tau.*-1"),
        (dict(w_srf=-0.5), "w_srf.*-0.5"),
        (dict(w_cls=float("nan")), "w_cls.*nan"),
        (dict(num_classes=1), "num_classes.*1"),
        (dict(ignore_index=1), "ignore_index 1"),
    ],
)
def test_check_loss_args_names_the_bad_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_loss_args(**{"variant": "paper", "num_classes": 3, **kwargs})


def test_loss_validates_its_settings():
    with pytest.raises(ValueError, match="'bogus'"):
        loss({"seg": [torch.zeros(1, 2, 1, 1)]}, label(0), "bogus")


def test_check_labels_names_values_outside_the_classes():
    check_labels(torch.tensor([[0, 2, 255]]), 3)
    with pytest.raises(ValueError, match=r"label values -1, 3, 7 .*0\.\.2.*255"):
        check_labels(torch.tensor([[0, 3, 255], [7, -1, 3]]), 3)


Z, C = torch.zeros(1, 2, 1, 1), torch.zeros(1, 2)  # one exit's seg and class logits


@pytest.mark.parametrize(
    "out, flags, variant, message",
    [
        ({"seg": [Z, Z], "cls": []}, dict(srl=True), "paper", "SR-L.*classify=True"),
        ({"seg": [Z, Z], "cls": []}, dict(mea=True), "official", "MEA.*classify=True"),
        ({"seg": [Z], "cls": [C]}, dict(srl=True), "official", "SR-L needs at least 2 exits"),
        ({"seg": [Z]}, dict(srf=True), "paper", "SR-F needs at least 2 exits"),
        ({"seg": [Z], "cls": [C]}, dict(mea=True), "paper", "MEA needs at least 2 exits"),
        ({"seg": [Z, Z]}, dict(srf=True), "paper-features", "feature_proj_dim"),
        ({"seg": [Z, Z], "feats": [torch.zeros(1, 4, 1, 1), Z]}, dict(srf=True), "paper-features", r"\[4, 2\]"),
        ({"seg": [torch.zeros(1, 5, 1, 1)]}, {}, "paper", r"B x 2 x h x w.*\(1, 5, 1, 1\)"),
        ({"seg": []}, {}, "paper", "no segmentation logits"),
    ],
)
def test_missing_outputs_raise_a_clear_error(out, flags, variant, message):
    with pytest.raises(ValueError, match=message):
        loss(out, label(0), variant, **flags)


# ---- real backbone ------------------------------------------------------------------------------


def test_every_combination_and_variant_trains_a_real_timm_backbone():
    torch.manual_seed(0)
    model = build_segmentor(
        "resnet18", "fcn", 3, exit_type="light", classify=True, feature_proj_dim=8
    ).train()
    images = torch.randn(2, 3, 32, 32)
    target = torch.randint(0, 3, (2, 32, 32))
    target[:, :4] = 255
    stem = model.param_groups()["backbone"][0]
    for (mea, srf, srl), variant in itertools.product(itertools.product([False, True], repeat=3), VARIANTS):
        model.zero_grad()
        terms = loss(model(images), target, variant, 3, mea=mea, srf=srf, srl=srl)
        active = {name for name, on in [("cls", mea), ("srf", srf), ("srl", srl)] if on}
        active |= {f"{name}_gap" for name in ("srf", "srl") if name in active}
        assert set(terms) == {"seg", "seg_head", "total"} | active
        assert torch.isfinite(terms["total"]), (mea, srf, srl, variant)
        terms["total"].backward()
        assert stem.grad is not None and torch.isfinite(stem.grad).all() and stem.grad.abs().sum() > 0


# ---- distillation gaps and the power normalisation ---------------------------------------------


def _entropy(p: list[float]) -> float:
    return -sum(q * math.log(q) for q in p if q > 0)


def test_gap_is_the_term_minus_the_teachers_entropy_per_student():
    teacher = pixels((0, LN3), (0, 0))  # (1/4, 3/4) and (1/2, 1/2)
    students = [pixels((LN3, 0), (0, 0)), pixels((0, 0), (0, LN3))]
    terms = loss({"seg": [teacher, *students]}, label(0, 1), "paper", srf=True)
    floor = (_entropy([1 / 4, 3 / 4]) + _entropy([1 / 2, 1 / 2])) / 2  # mean over the two pixels
    assert close(terms["srf_gap"], terms["srf"].item() - 2 * floor)
    matched = loss({"seg": [teacher, teacher.clone(), teacher.clone()]}, label(0, 1), "paper", srf=True)
    assert close(matched["srf_gap"], 0.0) and close(matched["srf"], 2 * floor)  # at its floor: no gap left


def test_official_gaps_one_hot_srf_teacher_and_binary_srl_entropy():
    torch.manual_seed(0)
    out = {"seg": [torch.randn(2, 3, 4, 4) for _ in range(3)], "cls": [torch.randn(2, 3) for _ in range(3)]}
    terms = loss(out, torch.randint(0, 3, (2, 4, 4)), "official", 3, srf=True, srl=True)
    assert close(terms["srf_gap"], terms["srf"].item())  # the argmax pseudo-label has no entropy
    p = torch.sigmoid(out["cls"][-1])
    binary = -(p * p.log() + (1 - p) * (1 - p).log()).mean().item()
    assert close(terms["srl_gap"], terms["srl"].item() - 2 * binary)
    same = loss({**out, "cls": [out["cls"][-1]] * 3}, torch.randint(0, 3, (2, 4, 4)), "official", 3, srl=True)
    assert close(same["srl_gap"], 0.0)


def test_gaps_are_not_part_of_the_total():
    torch.manual_seed(1)
    out = {"seg": [torch.randn(1, 3, 4, 4) for _ in range(3)], "cls": [torch.randn(1, 3) for _ in range(3)]}
    t = loss(out, torch.randint(0, 3, (1, 4, 4)), "paper", 3, srf=True, srl=True)
    assert close(t["total"], (t["seg"] + t["srf"] + t["srl"]).item())


def test_power_normalisation_is_the_papers_relu_power_over_the_channel_sum():
    teacher = torch.tensor([1.0, 3.0, -2.0]).view(1, 3, 1, 1)  # relu -> (1, 3, 0)
    student = torch.tensor([2.0, 2.0, 0.0]).view(1, 3, 1, 1)
    tau = 2.0
    out = {"seg": [torch.zeros(1, 2, 1, 1)] * 2, "feats": [teacher, student]}
    terms = loss(out, torch.zeros(1, 1, 1, dtype=torch.long), "paper-features", srf=True, tau=tau,
                 feature_norm="power")

    def normalised(values):
        powered = [(max(v, 0.0) + FEATURE_EPS) ** (1 / tau) for v in values]
        return [q / sum(powered) for q in powered]

    p, q = normalised([1.0, 3.0, -2.0]), normalised([2.0, 2.0, 0.0])
    expected = tau**2 * -sum(a * math.log(b) for a, b in zip(p, q))
    assert close(terms["srf"], expected)
    assert close(terms["srf_gap"], expected - tau**2 * _entropy(p))
    softmax = loss(out, torch.zeros(1, 1, 1, dtype=torch.long), "paper-features", srf=True, tau=tau)
    assert not close(softmax["srf"], expected)  # the default softmax normalisation is another reading


def test_unknown_feature_norm_is_refused_naming_it():
    out = {"seg": [torch.zeros(1, 2, 1, 1)] * 2, "feats": [torch.zeros(1, 3, 1, 1)] * 2}
    with pytest.raises(ValueError, match="unknown feature_norm 'l2'; valid: softmax, power"):
        loss(out, torch.zeros(1, 1, 1, dtype=torch.long), "paper-features", srf=True, feature_norm="l2")
