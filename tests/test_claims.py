"""The claims table: verdicts follow the measured effects, inconclusive rows say what the seeds could detect."""

import math

import pandas as pd
import pytest
from scipy import stats

from srlib.report.claims import claims_sections, cost_rows, effect_row, ratio_row, training_counts
from srlib.report.stats import detectable_effect

BASE = {0: 0.40, 1: 0.42, 2: 0.41, 3: 0.43}


def test_detectable_effect_has_the_stated_power():
    sd, n = 0.02, 3
    effect = detectable_effect(sd, n)
    critical = stats.t.ppf(0.975, n - 1)
    nc = effect * math.sqrt(n) / sd
    power = stats.nct.sf(critical, n - 1, nc) + stats.nct.cdf(-critical, n - 1, nc)
    assert power == pytest.approx(0.8, abs=1e-6)
    assert detectable_effect(sd, 10) < effect  # more seeds detect smaller effects
    assert math.isnan(detectable_effect(sd, 1))


def test_two_seeds_are_inconclusive_without_a_power_estimate():
    """scipy's noncentral t is NaN for df = 1 at large noncentrality: the row says so instead of failing."""
    row = effect_row("claim", {0: 0.45, 1: 0.38}, {0: 0.40, 1: 0.42}, +1)
    assert row["verdict"].startswith("inconclusive (")


@pytest.mark.parametrize("shift,sign,expected", [
    (+0.05, +1, "supported"), (-0.05, +1, "contradicted"), (+0.05, -1, "contradicted"), (-0.05, -1, "supported"),
])
def test_clear_effects_get_a_verdict(shift, sign, expected):
    treated = {seed: score + shift + 0.002 * seed for seed, score in BASE.items()}
    row = effect_row("claim", treated, BASE, sign)
    assert row["verdict"] == expected
    assert row["n"] == 4 and row["effect"].startswith(f"{100 * shift + 0.3:+.1f}")


def test_noisy_effect_is_inconclusive_and_names_the_detectable_effect():
    treated = {0: 0.45, 1: 0.38, 2: 0.44, 3: 0.41}
    row = effect_row("claim", treated, BASE, +1)
    assert row["verdict"].startswith("inconclusive (detectable at 80 % power with n=4: ±")
    assert float(row["p"]) >= 0.05


def test_cost_rows_compare_with_the_baseline():
    base = {"sr": "baseline", "exit": "none", "params_test": 100, "params_train": 100, "macs_test": 1000,
            "macs_train": 1000, "step_time_s": 1.0, "peak_memory_mib": 500}
    full = {"sr": "mea+srf+srl", "exit": "light", "params_test": 100, "params_train": 105, "macs_test": 1000,
            "macs_train": 1500, "step_time_s": 1.05, "peak_memory_mib": 600}
    rows = cost_rows([base, full], "light")
    assert [r["verdict"] for r in rows] == ["supported", "contradicted", "supported", "contradicted", "supported",
                                            "supported"]
    assert rows[1]["effect"] == "×1.500 MACs"
    assert ratio_row("x", None, 1.1, "s")["verdict"] == "not measured"


@pytest.mark.parametrize("q1, median, q3, verdict", [(1.02, 1.05, 1.08, "supported"),
                                                     (1.12, 1.16, 1.19, "contradicted"),
                                                     (1.06, 1.09, 1.13, "inconclusive")])
def test_step_time_is_judged_on_the_spread_of_interleaved_rounds(q1, median, q3, verdict):
    base = {"sr": "baseline", "exit": "none", "step_time_s": 1.0}
    full = {"sr": "mea+srf+srl", "exit": "light", "step_time_s": 1.0,  # the medians alone would say x1.000
            "step_time_ratio": {"median": median, "q1": q1, "q3": q3, "n": 10}}
    row = next(r for r in cost_rows([base, full], "light") if "step time" in r["claim"])
    assert row["verdict"].startswith(verdict)
    assert row["effect"] == f"×{median:.3f} s per step (IQR {q1:.3f}–{q3:.3f}, 10 interleaved rounds)"


def test_claims_sections_from_runs():
    rows = []
    for sr, shift in (("baseline", 0.0), ("mea", 0.02), ("mea+srf+srl", -0.1)):
        for seed, score in BASE.items():
            score += 0.001 * seed * len(sr)  # differences that vary, as real seeds' do
            rows.append({"dataset": "generated", "preset": "p", "pixel": "ce", "sr": sr, "seed": seed,
                         "config": {"model": {"exit": "light"}},
                         "result": {"metrics": {"miou": score + shift + 0.001 * seed, "thin_part_iou": 0.1,
                                                "hallucination_rate": 0.02}}})
    paper = {"preset": "deeplabv2_resnet101", "size": 321, "exit": "official", "params_test": 10, "params_train": 11,
             "macs_test": 100, "macs_train": 150}
    [section] = claims_sections({"runs": pd.DataFrame(rows), "costs": [], "level": 0.95}, paper)
    table = section["frame"].set_index("claim")
    assert table.loc["SR improves the baseline (+MEA+SR-F+SR-L vs baseline)", "verdict"] == "contradicted"
    assert table.loc["MEA adds to the baseline (+MEA vs baseline)", "verdict"] == "supported · borderline"  # p 0.02
    assert "mechanism" not in table  # no run scored its exits
    assert not any("SR-F adds to MEA" in claim for claim in table.index)  # cell not in the sweep: no row
    assert "supported = effect in the claimed direction" in section["caption"]
    paper_rows = table.loc[[c for c in table.index if "paper's setting" in c], "verdict"]
    assert list(paper_rows) == ["supported", "contradicted"]  # params x1.10, MACs x1.50


def test_training_counts_resnet101_without_allocating():
    counts = training_counts()
    assert counts["params_test"] == 44_048_532  # DeepLab-v2 ResNet-101, 21 classes
    assert counts["params_train"] > counts["params_test"] and counts["macs_train"] > counts["macs_test"]


def test_a_verdict_with_p_between_001_and_010_is_marked_borderline():
    reference = {0: 0.50, 1: 0.52, 2: 0.51}
    strong = effect_row("x", {0: 0.60, 1: 0.622, 2: 0.612}, reference, +1)
    borderline = effect_row("x", {0: 0.54, 1: 0.59, 2: 0.56}, reference, +1)
    unsure = effect_row("x", {0: 0.53, 1: 0.60, 2: 0.56}, reference, +1)
    weak = effect_row("x", {0: 0.49, 1: 0.60, 2: 0.53}, reference, +1)
    assert strong["p"] in ("<0.001", *(f"{p / 1000:.3f}" for p in range(1, 10))) and strong["verdict"] == "supported"
    assert 0.01 <= float(borderline["p"]) < 0.05 and borderline["verdict"] == "supported · borderline"
    assert 0.05 <= float(unsure["p"]) < 0.10 and unsure["verdict"].startswith("inconclusive")
    assert unsure["verdict"].endswith(" · borderline")
    assert float(weak["p"]) >= 0.10 and "borderline" not in weak["verdict"]


def test_sr_f_claims_quote_the_mechanism_of_both_cells():
    rows = []
    for sr, agreement, teacher in (("mea", 0.40, 0.20), ("mea+srf", 0.96, 0.09)):
        for seed in range(3):
            final_terms = {"srf": 0.5, "srf_gap": 0.5} if sr == "mea+srf" else {}
            rows.append({"dataset": "d", "preset": "p", "pixel": "ce", "sr": sr, "seed": seed,
                         "config": {"model": {"exit": "light"}}, "result": {
                             "metrics": {"miou": 0.3 + 0.01 * seed * len(sr), "exit1_miou": teacher, "exit2_miou": 0.3,
                                         "teacher_agreement": agreement, "head_accuracy_teacher_wrong": 0.1},
                             "train": {"final_terms": final_terms}}})
    paper = {"preset": "p", "size": 1, "exit": "light", "params_test": 1, "params_train": 1, "macs_test": 1,
             "macs_train": 1}
    [section] = claims_sections({"runs": pd.DataFrame(rows), "costs": [], "level": 0.95}, paper)
    assert not section["frame"].isna().any().any()  # cost rows have no mechanism: shown as '–', not 'nan'
    row = section["frame"].set_index("claim").loc["SR-F adds to MEA (+MEA+SR-F vs +MEA)"]
    assert row["mechanism"] == ("exit 1 (teacher) mIoU 9 % (+MEA 20 %); head = exit 1 on 96 % (+MEA 40 %); "
                                "head right on 10 % of exit 1's errors (+MEA 10 %); SR-F gap 0.500")


def test_each_settings_claims_judge_that_settings_own_cost_records():
    rows = [{"dataset": "d", "preset": "p", "pixel": "ce", "setting": setting, "sr": sr, "seed": seed,
             "config": {"model": {"exit": "light"}}, "result": {"metrics": {"miou": 0.3 + 0.01 * seed * len(sr)}}}
            for setting in ("narrow", "wide") for sr in ("baseline", "mea+srf+srl") for seed in range(3)]
    costs = [{"dataset": "d", "preset": "p", "pixel": "ce", "setting": setting, "sr": sr,
              "exit": "none" if sr == "baseline" else "light", "params_test": 10, "params_train": params}
             for setting, params in (("narrow", 10.5), ("wide", 20)) for sr, params in (("baseline", 10), (
                 "mea+srf+srl", params))]
    paper = {"preset": "p", "size": 1, "exit": "light", "params_test": 1, "params_train": 1, "macs_test": 1,
             "macs_train": 1}
    sections = claims_sections({"runs": pd.DataFrame(rows), "costs": costs, "level": 0.95}, paper)
    effects = [section["frame"].set_index("claim").loc[
        "Little training overhead: parameters, training model vs baseline (limit ×1.10)", "effect"]
        for section in sections]
    assert [section["title"].split(" · ")[0] for section in sections] == ["setting narrow", "setting wide"]
    assert effects == ["×1.050 params", "×2.000 params"]
