"""The claims table: each claim of the paper, the measured effect and a verdict.

Claims (Zhang et al., ICCV 2021): SR improves the baseline; each part adds to what came before it in the
paper's incremental order; training overhead is small; there is no test-time overhead; Failure-1 (thin
parts, small objects) and Failure-2 (hallucinated classes) errors become fewer.

Verdicts for effects measured over seeds (paired by seed, two-sided paired t-test):
**supported** (effect in the claimed direction, p < 0.05), **contradicted** (opposite direction,
p < 0.05), **inconclusive** (otherwise), then with the smallest effect the seeds could detect at 80 %
power (``srlib.report.stats.detectable_effect``); any of them is marked **borderline** when 0.01 <= p < 0.10, where a
rerun on another machine (other CPU kernels, the same code) can flip it. Costs are deterministic counts or
medians: a ratio is supported when it is at most the stated limit, contradicted when above it.

Rows of effects whose cells have exits quote the mechanism measured in those runs (``mechanism``): exit 1's
mIoU (SR-F's teacher), how often the head agrees with it, how often the head is right where it is wrong, and
the final distillation gaps, for the treated cell and, where it has exits, the reference cell.
"""

import functools
import math
import statistics

from srlib.report.format import BOUNDED, interval, iqr, p_value, times
from srlib.report.frames import group_title, groups, score, seed_scores
from srlib.report.stats import ALPHA, LEVEL, POWER, detectable_effect, paired_difference, significant
from srlib.sweep.cells import FULL_SR, sr_label

BORDERLINE = (0.01, 0.10)  # p in [low, high): a verdict another machine may flip
TRAIN_OVERHEAD_LIMIT = 1.10  # our reading of "little computational overhead during training"
# (claim, treated cell, reference cell, metric in metrics.json, claimed sign: +1 = higher is better)
EFFECT_CLAIMS = (
    ("SR improves the baseline (+MEA+SR-F+SR-L vs baseline)", FULL_SR, "baseline", "miou", +1),
    ("MEA adds to the baseline (+MEA vs baseline)", "mea", "baseline", "miou", +1),
    ("SR-F adds to MEA (+MEA+SR-F vs +MEA)", "mea+srf", "mea", "miou", +1),
    ("SR-L adds to MEA (+MEA+SR-L vs +MEA)", "mea+srl", "mea", "miou", +1),
    ("SR-F and SR-L together add to MEA (+MEA+SR-F+SR-L vs +MEA)", FULL_SR, "mea", "miou", +1),
    ("Fewer Failure-1 errors: thin-part IoU rises (full SR vs baseline)", FULL_SR, "baseline", "thin_part_iou", +1),
    ("Fewer Failure-1 errors: small-object IoU rises (full SR vs baseline)", FULL_SR, "baseline",
     "small_object_iou", +1),
    ("Fewer Failure-2 errors: hallucinated-class rate falls (full SR vs baseline)", FULL_SR, "baseline",
     "hallucination_rate", -1),
)


def verdict(mean: float, p: float, sign: int) -> str:
    if not (math.isfinite(mean) and math.isfinite(p)) or not significant(p):
        return "inconclusive"
    return "supported" if mean * sign > 0 else "contradicted"


def effect_row(claim: str, treated: dict, reference: dict, sign: int, level: float = LEVEL) -> dict:
    """One claims-table row from seed -> score (fractions) of the treated and reference cells."""
    diff = paired_difference(treated, reference, level)
    seeds = sorted(s for s in set(treated) & set(reference) if treated[s] is not None and reference[s] is not None)
    diffs = [treated[s] - reference[s] for s in seeds]
    sd = statistics.stdev(diffs) if len(diffs) >= 2 else math.nan
    judged = verdict(diff["mean"], diff["p"], sign)
    if judged == "inconclusive" and diff["n"] >= 2:
        mde = detectable_effect(sd, diff["n"])
        judged += (f" (detectable at {100 * POWER:.0f} % power with n={diff['n']}: ±{100 * mde:.1f} points)"
                   if math.isfinite(mde) else f" (n={diff['n']}: too few seeds for a power estimate)")
    if BORDERLINE[0] <= diff["p"] < BORDERLINE[1]:
        judged += " · borderline"
    return {
        "claim": claim,
        "effect": interval(diff["mean"], diff["half"], signed=True, unit=" points"),
        "n": diff["n"],
        "p": p_value(diff["p"], BOUNDED),
        "verdict": judged,
    }


def ratio_row(claim: str, ratio: float | None, limit: float, what: str) -> dict:
    """A cost claim: supported when ``ratio`` <= ``limit``."""
    if ratio is None or not math.isfinite(ratio):
        judged = "not measured"
    else:
        judged = "supported" if ratio <= limit + 1e-12 else "contradicted"
    return {"claim": claim, "effect": "–" if ratio is None else f"{times(ratio)} {what}", "n": "–", "p": "–",
            "verdict": judged}


def _mean_of(cells, get) -> float | None:
    values = [v for v in map(get, cells["result"]) if v is not None and math.isfinite(v)]
    return statistics.fmean(values) if values else None


def mechanism(group, treated: str, reference: str) -> str:
    """The SR mechanism behind one effect, from the runs' records (means over finished seeds): exit 1's mIoU,
    the head-teacher agreement, the head's accuracy where exit 1 is wrong, for ``treated`` and, when its runs
    scored exits, ``reference`` (in parentheses); the final SR-F / SR-L gaps of ``treated``. '' without exit
    scores."""
    def final(name):
        return lambda r: ((r or {}).get("train") or {}).get("final_terms", {}).get(name) if r else None

    def text(sr: str, metric: str):
        value = _mean_of(group[group["sr"] == sr], lambda r: score(r, metric))
        return None if value is None else interval(value, math.nan, digits=0, unit=" %")

    parts = []
    for metric, what in (("exit1_miou", "exit 1 (teacher) mIoU {}"), ("teacher_agreement", "head = exit 1 on {}"),
                         ("head_accuracy_teacher_wrong", "head right on {} of exit 1's errors")):
        value = text(treated, metric)
        if value is not None:
            other = text(reference, metric)
            parts.append(what.format(value) + (f" ({sr_label(reference)} {other})" if other else ""))
    for term, name in (("srf", "SR-F"), ("srl", "SR-L")):
        gap = _mean_of(group[group["sr"] == treated], final(f"{term}_gap")) if term in treated.split("+") else None
        if gap is not None:
            parts.append(f"{name} gap {gap:.3f}")
    return "; ".join(parts)


def _ratio(record: dict | None, base: dict | None, key: str, base_key: str | None = None):
    if not record or not base or record.get(key) is None or not base.get(base_key or key):
        return None
    return record[key] / base[base_key or key]


def step_time_row(claim: str, full: dict | None, base: dict | None) -> dict:
    """The step-time claim. From the interleaved rounds of ``full``'s cost record (``step_time_ratio``):
    supported when the whole interquartile range of the per-round ratios is <= the limit, contradicted when
    it is all above, inconclusive when it straddles the limit. Without them (older cost files), the ratio of
    the two records' median step times, as ``ratio_row``."""
    spread = (full or {}).get("step_time_ratio")
    if not isinstance(spread, dict):  # absent, or NaN from a frame of records
        return ratio_row(claim, _ratio(full, base, "step_time_s"), TRAIN_OVERHEAD_LIMIT, "s per step")
    limit = TRAIN_OVERHEAD_LIMIT + 1e-12
    verdict = ("supported" if spread["q3"] <= limit else "contradicted" if spread["q1"] > limit
               else "inconclusive (the interquartile range straddles the limit)")
    return {"claim": claim, "n": "–", "p": "–", "verdict": verdict,
            "effect": f"{times(spread['median'])} s per step ({iqr(spread)}, {spread['n']} interleaved rounds)"}


def cost_rows(records: list[dict], exit_type: str | None) -> list[dict]:
    """Overhead claims from one group's cost records: the full SR stack (with ``exit_type`` exits) against the
    baseline, training model against the baseline's test model, and the test models against each other."""
    base = next((r for r in records if r["sr"] == "baseline"), None)
    full = next((r for r in records if r["sr"] == FULL_SR and (exit_type is None or r["exit"] == exit_type)), None)
    train = f"training model vs baseline (limit ×{TRAIN_OVERHEAD_LIMIT:.2f})"
    return [
        ratio_row(f"Little training overhead: parameters, {train}", _ratio(full, base, "params_train", "params_test"),
                  TRAIN_OVERHEAD_LIMIT, "params"),
        ratio_row(f"Little training overhead: FLOPs, {train}", _ratio(full, base, "macs_train", "macs_test"),
                  TRAIN_OVERHEAD_LIMIT, "MACs"),
        step_time_row(f"Little training overhead: step time, {train}", full, base),
        ratio_row(f"Little training overhead: peak memory, {train}", _ratio(full, base, "peak_memory_mib"),
                  TRAIN_OVERHEAD_LIMIT, "MiB"),
        ratio_row("No test-time overhead: parameters of the inference model", _ratio(full, base, "params_test"),
                  1.0, "params"),
        ratio_row("No test-time overhead: FLOPs of the inference model", _ratio(full, base, "macs_test"), 1.0, "MACs"),
    ]


def paper_setting_rows(counts: dict) -> list[dict]:
    """Overhead at the paper's own setting from ``training_counts``."""
    what = f"{counts['preset']}, {counts['size']} x {counts['size']}, {counts['exit']} exits"
    return [
        ratio_row(f"Little training overhead at the paper's setting ({what}): parameters",
                  counts["params_train"] / counts["params_test"], TRAIN_OVERHEAD_LIMIT, "params"),
        ratio_row(f"Little training overhead at the paper's setting ({what}): FLOPs",
                  counts["macs_train"] / counts["macs_test"], TRAIN_OVERHEAD_LIMIT, "MACs"),
    ]


@functools.cache
def training_counts(preset: str = "deeplabv2_resnet101", size: int = 321, num_classes: int = 21,
                    exit_type: str = "official", **overrides) -> dict:
    """Parameters and multiply-adds of a preset's baseline (its inference model) and of its full-SR training
    model (exits and class-logit heads) on a ``size`` x ``size`` input, counted on the meta device: no weights
    are allocated, nothing is trained. Defaults: the paper's setting. ``overrides``: more ``build_preset``
    arguments (``min_exit_stride``, ``output_stride``)."""
    import torch

    from srlib.cost import count_flops, count_parameters
    from srlib.models import build_preset

    with torch.device("meta"):
        model = build_preset(preset, num_classes, exit_type=exit_type, classify=True, **overrides)
    shape = (1, 3, size, size)
    return {"preset": preset, "size": size, "exit": exit_type,
            "params_test": count_parameters(model.inference_model()), "params_train": count_parameters(model),
            "macs_test": count_flops(model.inference_model(), shape)["macs"],
            "macs_train": count_flops(model, shape)["macs"]}


def claims_sections(data: dict, paper_counts: dict | None = None) -> list[dict]:
    """One claims table per dataset x preset x pixel loss (rows: claim, effect, n, p, verdict).

    ``data``: the tables' input (``srlib.report.scores``): "runs", "costs", "level". ``paper_counts``: the
    paper-setting counts; default ``training_counts`` (about 4 s of CPU, once per process).
    """
    import pandas as pd

    frame, cost_records, level = data["runs"], data["costs"], data["level"]
    paper_counts = paper_counts or training_counts()
    sections = []
    for key, group in groups(frame, ["dataset", "preset", "pixel"]):
        present = set(group["sr"])
        rows = [{**effect_row(claim, seed_scores(group[group["sr"] == treated], metric),
                              seed_scores(group[group["sr"] == reference], metric), sign, level),
                 "mechanism": mechanism(group, treated, reference)}
                for claim, treated, reference, metric, sign in EFFECT_CLAIMS if {treated, reference} <= present]
        if not any(row["mechanism"] for row in rows):  # records from before exits were scored
            rows = [{k: v for k, v in row.items() if k != "mechanism"} for row in rows]
        exits = {str(c.get("model", {}).get("exit")) for c, sr in zip(group["config"], group["sr"])
                 if sr == FULL_SR and isinstance(c, dict)}
        records = [r for r in cost_records if all(str(r.get(axis, "")) == str(value) for axis, value in key.items())]
        rows += cost_rows(records, next(iter(exits)) if len(exits) == 1 else None)
        rows += paper_setting_rows(paper_counts)
        caption = (
            f"Effects are paired differences over seeds, in percentage points, ± half width of the "
            f"{100 * level:.0f} % t-interval; p = two-sided paired t-test. Verdicts: supported = effect in the "
            f"claimed direction with p < {ALPHA}; contradicted = opposite direction with p < {ALPHA}; "
            f"inconclusive otherwise, with the smallest effect the seeds could detect at {100 * POWER:.0f} % power; "
            f"borderline = {BORDERLINE[0]} <= p < {BORDERLINE[1]}: a rerun on another machine (other CPU kernels, the "
            f"same code) can flip such a verdict. Mechanism (where the runs scored their exits): exit 1's validation "
            f"mIoU (SR-F's teacher), the share of pixels where the head predicts exit 1's class, the share of exit "
            f"1's errors the head gets right, each for the treated cell and (in parentheses) the reference cell; the "
            f"final SR-F / SR-L distillation gaps (term minus teacher entropy; exits.md). "
            f"Costs: ×r = ratio to the baseline (MACs = multiply-adds); a training overhead is 'little' when "
            f"r <= {TRAIN_OVERHEAD_LIMIT:.2f} (our reading of the paper's 'little computational overhead'); "
            f"test-time overhead must be exactly ×1.000. Step time, when the cost rule timed full SR against the "
            f"baseline in interleaved rounds: the median per-round ratio, supported when its whole interquartile "
            f"range is within the limit, contradicted when it is all above, inconclusive when it straddles it. "
            f"Full SR = +MEA+SR-F+SR-L."
        )
        sections.append({"title": group_title(key),
                         "caption": caption, "frame": pd.DataFrame(rows).fillna("–")})  # no mechanism for costs
    return sections
