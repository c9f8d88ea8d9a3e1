"""The score tables: ablation, failure modes, per class, exits and the SR mechanism, run status.

Every ``*_sections(data)`` takes the report's ``data`` ({"runs": the frame of runs
(``srlib.report.frames.collect_runs``), "costs": cost records (``srlib.report.costs``), "costs_from_runs": bool,
"level": CI level, "settings": a settings sweep's settings in order, else ()}) and returns a table file's
sections, each {"title", "caption", "frame" (pandas DataFrame of strings)}. Scores are fractions in the records
and percent in the tables (``srlib.report.format``); a failed or missing run is counted in its cell ("FAILED
1/3"), never dropped silently. ``run_caption`` says what ran.
"""

import math

from srlib.report.claims import effect_row
from srlib.report.format import CLIPPED, EXACT, FAILURE_METRICS, METRIC_NAMES, interval, p_value, percent
from srlib.report.frames import config_value, group_title, groups, ordered_sr, score, seed_scores, status_note
from srlib.report.stats import mean_ci, paired_difference
from srlib.rundir.layout import RUN_STATUSES
from srlib.sweep.cells import FULL_SR, SR_ORDER, sr_label


def _cell(group, key: str, level: float) -> str:
    """'72.3 ± 1.2 (n=3)' over the finished runs, prefixed by the failure note if any."""
    mean, half, n = mean_ci([score(r, key) for r in group["result"]], level)
    note = status_note(group)
    value = f"{percent(mean, half)} (n={n})" if n else ""
    return " · ".join(part for part in (note, value) if part) or "–"


def _describe(runs, key: str) -> str:
    """The values of a config key among ``runs``: 'v'; 'v1 (dataset a), v2 (dataset b)' when each dataset
    has one value; else 'v1 (5 runs), v2 (1 run)'."""
    values = [("none" if v is None else str(v)) for v in (config_value(cfg, key) for cfg in runs["config"])]
    distinct = list(dict.fromkeys(values))
    if len(distinct) == 1:
        return distinct[0]
    per_dataset = {}
    for dataset, value in zip(runs["dataset"], values):
        per_dataset.setdefault(dataset, set()).add(value)
    if all(len(v) == 1 for v in per_dataset.values()):
        return ", ".join(f"{next(iter(v))} ({d})" for d, v in per_dataset.items())
    return ", ".join(f"{v} ({values.count(v)} run{'s' if values.count(v) > 1 else ''})" for v in distinct)


def _commit(result: dict) -> str:
    """'1208249416ab' or '1208249416ab (dirty tree)' from a metrics.json."""
    commit = str(result.get("git_commit"))[:12]
    return commit + (" (dirty tree)" if str(result.get("tags", {}).get("git_dirty")).lower() == "true" else "")


def run_caption(runs) -> str:
    """Variant, model, schedule, seeds, commit and device of a set of runs (their configs and results)."""
    runs = runs[runs["config"].notna()]
    commits = sorted({_commit(r) for r in runs["result"] if r is not None}) or ["none finished"]
    devices = sorted({f"{r.get('device')}, {r.get('threads')} thread(s)" for r in runs["result"] if r is not None})
    parts = [
        f"SR variant {_describe(runs, 'loss.variant')} (tau {_describe(runs, 'loss.tau')})",
        f"preset {_describe(runs, 'model.preset')}"
        + (f" with backbone {_describe(runs, 'model.backbone')}" if runs["config"].map(
            lambda c: config_value(c, "model.backbone") is not None).any() else "")
        + f", exit {_describe(runs, 'model.exit')}, pretrained weights {_describe(runs, 'model.pretrained')}",
        f"schedule {_describe(runs, 'optim.iters')} iterations, batch {_describe(runs, 'data.batch_size')}, "
        f"crop {_describe(runs, 'data.crop_size')}, {_describe(runs, 'optim.name')} lr {_describe(runs, 'optim.lr')} "
        f"(head x{_describe(runs, 'optim.head_lr_mult')}), SR warm-up {_describe(runs, 'optim.sr_warmup_iters')}",
        f"evaluated on the {_describe(runs, 'data.eval_split')} split",
        f"seeds {', '.join(str(s) for s in sorted(set(runs['seed'])))}",
        f"git commit {', '.join(commits)}",
        f"device {'; '.join(devices) or 'n/a'}",
    ]
    return "; ".join(parts) + "."


# -- sections: a table file's list of {"title", "caption", "frame"} (module docstring) -------------------
def ablation_sections(data: dict, metric: str = "miou") -> list[dict]:
    """One table per preset x pixel loss: rows = SR combinations, two columns per dataset."""
    import pandas as pd

    frame, level = data["runs"], data["level"]
    sections = []
    for key, group in groups(frame, ["preset", "pixel"]):
        rows = []
        for sr in ordered_sr(group):
            row = {"SR": sr_label(sr)}
            for dataset, cells in group[group["sr"] == sr].groupby("dataset", sort=True):
                row[f"{dataset}: {METRIC_NAMES.get(metric, metric)} %"] = _cell(cells, metric, level)
                base = group[(group["dataset"] == dataset) & (group["sr"] == "baseline")]
                if sr == "baseline":
                    diff_text = "—"
                elif base.empty:
                    diff_text = "no baseline"
                else:
                    diff = paired_difference(seed_scores(cells, metric), seed_scores(base, metric), level)
                    diff_text = (f"{percent(diff['mean'], diff['half'], signed=True)} "
                                 f"(n={diff['n']}, p={p_value(diff['p'], EXACT)})" if diff["n"] else "no paired seeds")
                row[f"{dataset}: Δ vs baseline"] = diff_text
            rows.append(row)
        caption = (
            f"{METRIC_NAMES.get(metric, metric)} in %: mean ± half width of the {100 * level:.0f} % t-interval over "
            f"seeds (n finished runs); {CLIPPED}. "
            f"Δ = paired difference to the baseline over the seeds where both finished, in points, ± half width "
            f"of the {100 * level:.0f} % t-interval of the per-seed differences, p = two-sided paired "
            f"t-test. FAILED k/n = k of n seeds failed (non-finite loss or crash); MISSING = not run yet. "
            + run_caption(group)
        )
        sections.append({"title": group_title(key), "caption": caption,
                         "frame": pd.DataFrame(rows).fillna("not in sweep")})
    return sections


def failure_sections(data: dict) -> list[dict]:
    """One table per preset x pixel loss x dataset: rows = SR combinations, columns = failure-mode scores."""
    import pandas as pd

    frame, level = data["runs"], data["level"]
    sections = []
    for key, group in groups(frame, ["preset", "pixel", "dataset"]):
        rows = []
        for sr in ordered_sr(group):
            cells = group[group["sr"] == sr]
            row = {"SR": sr_label(sr), "runs": f"{(cells['status'] == 'FINISHED').sum()}/{len(cells)} finished"}
            for metric, name in {"miou": "mIoU", **FAILURE_METRICS}.items():
                mean, half, n = mean_ci([score(r, metric) for r in cells["result"]], level)
                row[f"{name} %"] = percent(mean, half)
            rows.append(row)
        caption = (
            "Failure-1 (thin parts, small objects) and Failure-2 (hallucinated classes) scores in %, mean ± "
            f"{100 * level:.0f} % t-interval over finished seeds; {CLIPPED}. thin-part IoU = IoU on thin-part pixels "
            "(generated dataset's part mask); body IoU = foreground outside the parts; small-object IoU = IoU on "
            "ground-truth components below 1 % of the image; hallucinated-class rate = share of pixels predicted "
            "as a class absent from that image's ground truth (lower is better). – = not computable. "
            + run_caption(group)
        )
        sections.append({"title": group_title(key),
                         "caption": caption, "frame": pd.DataFrame(rows)})
    return sections


def per_class_sections(data: dict) -> list[dict]:
    """One table per preset x pixel loss x dataset: rows = classes, columns = SR combinations (mean IoU %)."""
    import numpy as np
    import pandas as pd

    frame = data["runs"]
    sections = []
    for key, group in groups(frame, ["preset", "pixel", "dataset"]):
        finished = group[group["status"] == "FINISHED"]
        if finished.empty:
            continue
        classes = finished["result"].iloc[0].get("classes") or []
        table = {"class": classes}
        for sr in ordered_sr(finished):
            per_seed = [r["metrics"]["iou_per_class"] for r in finished[finished["sr"] == sr]["result"]]
            values = np.array([[math.nan if v is None else v for v in ious] for ious in per_seed], dtype=float)
            counts = np.isfinite(values).sum(axis=0)
            table[sr] = np.where(counts > 0, np.nansum(values, axis=0) / np.maximum(counts, 1), math.nan)
        body = pd.DataFrame(table)
        if "baseline" in body and FULL_SR in body:
            body["Δ full SR"] = body[FULL_SR] - body["baseline"]
        shown = body.rename(columns={sr: sr_label(sr) for sr in SR_ORDER})
        for column in shown.columns[1:]:
            signed = column == "Δ full SR"
            shown[column] = [interval(v, math.nan, signed=signed) for v in shown[column]]
        counts = ", ".join(f"{sr_label(sr)} n={(finished['sr'] == sr).sum()}" for sr in ordered_sr(finished))
        caption = (f"Per-class IoU in %, mean over finished seeds ({counts}); – = class absent from ground truth "
                   f"and predictions. Δ full SR = {sr_label(FULL_SR)} minus baseline. " + run_caption(group))
        sections.append({"title": group_title(key),
                         "caption": caption, "frame": shown})
    return sections


MECHANISM = {  # record metric -> column of the exits table
    "teacher_agreement": "head = exit 1 %",
    "head_accuracy_teacher_wrong": "head right where exit 1 wrong %",
}
GAPS = ("srf_gap", "srl_gap")  # train.final_terms: the distillation gaps at the last logged step


def exit_count(group) -> int:
    """The most exits any run of ``group`` scored (0 when none did: baselines, or records from before exits were
    scored)."""
    metrics = [r.get("metrics", {}) for r in group["result"] if r is not None]
    return max((sum(1 for key in m if key.startswith("exit") and key.endswith("_miou")) for m in metrics), default=0)


def _final_term(result: dict | None, name: str):
    return None if result is None else ((result.get("train") or {}).get("final_terms") or {}).get(name)


def exits_sections(data: dict) -> list[dict]:
    """One table per dataset x preset x pixel loss: rows = SR combinations with exits, columns = each exit's
    validation mIoU (exit 1 = SR-F's teacher, the head last), the head-teacher agreement, the head's accuracy
    where exit 1 is wrong, and the final distillation gaps; mean ± CI over seeds."""
    import pandas as pd

    frame, level = data["runs"], data["level"]
    sections = []
    for key, group in groups(frame, ["dataset", "preset", "pixel"]):
        exits = exit_count(group)
        if not exits:
            continue
        rows = []
        for sr in ordered_sr(group):
            cells = group[group["sr"] == sr]
            if not exit_count(cells):
                continue
            row = {"SR": sr_label(sr), "runs": f"{(cells['status'] == 'FINISHED').sum()}/{len(cells)} finished"}
            for k in range(1, exits + 1):
                name = "head" if k == exits else f"exit {k}"
                row[f"{name} mIoU %"] = percent(*mean_ci([score(r, f"exit{k}_miou") for r in cells["result"]],
                                                         level)[:2])
            for metric, column in MECHANISM.items():
                row[column] = percent(*mean_ci([score(r, metric) for r in cells["result"]], level)[:2])
            for gap in GAPS:
                mean, half, _ = mean_ci([_final_term(r, gap) for r in cells["result"]], level)
                row[gap.replace("_", " ")] = interval(mean, half, scale=1, digits=3)
            rows.append(row)
        caption = (
            f"The mechanism, per SR cell with exits: validation mIoU of every exit in % (exit 1 taps the shallowest "
            f"stage and is SR-F's teacher; the head is exit {exits}, the test-time model), mean ± {100 * level:.0f} % "
            f"t-interval over finished seeds; {CLIPPED}. head = exit 1 = share of valid pixels where the head's class "
            "equals exit 1's; head right where exit 1 wrong = share of the pixels exit 1 misclassifies that the head "
            "gets right. srf gap / srl gap = the distillation term minus its teacher's entropy summed over the "
            "students (the KL part, what a student can still reduce) at the last logged step, unweighted; official "
            "SR-F's teacher is one-hot, so its gap is the term itself; – = the term is off. " + run_caption(group)
        )
        sections.append({"title": group_title(key), "caption": caption, "frame": pd.DataFrame(rows)})
    return sections


def settings_sections(data: dict) -> list[dict]:
    """A settings sweep at a glance, one table per dataset x preset x pixel loss: rows = settings; the baseline's
    and the full SR cell's mIoU (or the last SR cell present), their paired difference with its verdict
    (``srlib.report.claims.effect_row``), and the full SR cell's mechanism (exit 1's mIoU, head-teacher agreement,
    the head's accuracy where exit 1 is wrong, the SR-F gap)."""
    import pandas as pd

    frame, level = data["runs"], data["level"]
    sections = []
    for key, group in groups(frame, ["dataset", "preset", "pixel"], by_setting=False):
        present = ordered_sr(group)
        treated = FULL_SR if FULL_SR in present else present[-1]
        rows = []
        for setting, cells in group.groupby("setting", sort=True, observed=True):
            full = cells[cells["sr"] == treated]
            effect = effect_row("", seed_scores(full, "miou"), seed_scores(cells[cells["sr"] == "baseline"], "miou"),
                                +1, level)
            row = {"setting": str(setting), "baseline mIoU %": _cell(cells[cells["sr"] == "baseline"], "miou", level),
                   f"{sr_label(treated)} mIoU %": _cell(full, "miou", level), "Δ": effect["effect"],
                   "p": effect["p"], "verdict": effect["verdict"]}
            for metric, column in {"exit1_miou": "exit 1 mIoU %", **MECHANISM}.items():
                row[column] = percent(*mean_ci([score(r, metric) for r in full["result"]], level)[:2])
            mean, _, n = mean_ci([_final_term(r, "srf_gap") for r in full["result"]], level)
            row["SR-F gap"] = f"{mean:.3f}" if n else "–"
            rows.append(row)
        caption = " ".join([
            f"Each setting's baseline and {sr_label(treated)}: mIoU in %, mean ± {100 * level:.0f} % t-interval over",
            "seeds (n finished); their paired difference in points with p and the claims table's verdict (borderline:",
            f"0.01 <= p < 0.10); the mechanism in the {sr_label(treated)} runs, as exits.md defines it (exit 1 is",
            "SR-F's teacher). A baseline shared by several settings is the same runs in each row.", run_caption(group),
        ])
        sections.append({"title": group_title(key), "caption": caption, "frame": pd.DataFrame(rows)})
    return sections


def status_sections(data: dict) -> list[dict]:
    """One table of run counts per cell (rows: dataset x preset x pixel loss x SR combination) and, when
    some failed, one of the failed runs with their errors."""
    import pandas as pd

    frame = data["runs"]
    rows = []
    for key, group in groups(frame, ["dataset", "preset", "pixel"]):
        for sr in ordered_sr(group):
            cells = group[group["sr"] == sr]
            rows.append({**key, "SR": sr_label(sr), "seeds": ", ".join(str(s) for s in sorted(cells["seed"])),
                         **{status: str((cells["status"] == status).sum()) for status in RUN_STATUSES}})
    sections = [{"title": "Runs per cell", "frame": pd.DataFrame(rows),
                 "caption": "FINISHED = metrics.json written; FAILED = training stopped (non-finite loss); "
                            "MISSING = not run yet, or killed."}]
    failed = frame[frame["status"] == "FAILED"]
    if len(failed):
        sections.append({"title": "Failed runs", "caption": "The error each failed run recorded in its outcome.json.",
                         "frame": pd.DataFrame({"run": [f"`{d}`" for d in failed["run_dir"]],
                                                "error": list(failed["error"])})})
    return sections
