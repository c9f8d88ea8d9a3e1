"""Benchmark tables from run directories: ablation, cost, failure modes and per class, as markdown and HTML.

``build_tables`` writes every file of ``TABLE_FILES`` (the figures come from ``srlib.figures``). Run
directories are read by ``srlib.results`` (which documents metrics.json); statistics over seeds are
``srlib.stats``'. Scores are fractions in the files and percent in the tables. A failed or missing run
is counted in its cell ("FAILED 1/3"), never dropped silently.

The workflow imports ``TABLE_FILES`` at parse time, so pandas, scipy and tabulate are imported inside the
functions that use them.
"""

import math
from pathlib import Path

from srlib.claims import claims_sections
from srlib.figures import plot_ablation, plot_pictures
from srlib.config import MEMORY_KINDS
from srlib.files import read_json, read_yaml
from srlib.report.frames import collect_runs, group_title, groups, ordered_sr, score, serve_settings, status_note
from srlib.rundir.layout import RUN_STATUSES
from srlib.tables_format import FAILURE_METRICS, METRIC_NAMES
from srlib.stats import LEVEL, mean_ci, paired_difference
from srlib.sweep import COST_AXES, FULL_SR, SR_ORDER, canonical_sr, path_axes, pixel_label, sr_label, sr_rank
from srlib.tables_html import write_page

CLIPPED = "an interval reaching past 0 or 100 % is shown clipped to them as (low–high)"


# -- formatting -------------------------------------------------------------------------------------
def _pct(mean: float, half: float, signed: bool = False) -> str:
    """A fraction's mean and interval half width in percent: '38.0 ± 1.9'. An unsigned score's interval
    that reaches past 0 or 100 % is shown clipped to them, as '(low–high)': '2.7 (0.0–13.3)'."""
    sign = "+" if signed else ""
    if math.isnan(mean):
        return "–"
    text = f"{100 * mean:{sign}.1f}"
    if math.isnan(half):
        return text + " ± n/a"
    low, high = mean - half, mean + half
    if not signed and (low < 0 or high > 1):
        return f"{text} ({100 * max(low, 0.0):.1f}–{100 * min(high, 1.0):.1f})"
    return text + f" ± {100 * half:.1f}"


def _p(p: float) -> str:
    return "n/a" if math.isnan(p) else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def _cell(group, key: str, level: float) -> str:
    """'72.3 ± 1.2 (n=3)' over the finished runs, prefixed by the failure note if any."""
    mean, half, n = mean_ci([score(r, key) for r in group["result"]], level)
    note = status_note(group)
    value = f"{_pct(mean, half)} (n={n})" if n else ""
    return " · ".join(part for part in (note, value) if part) or "–"


def _si(value, unit: str) -> str:
    """1.5e9, "MAC" -> '1.5 GMAC'; mebibytes stay in MiB, seconds have three decimals."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    if unit == "s":
        return f"{value:.3f} s"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}"


def _get(cfg: dict | None, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _describe(runs, key: str) -> str:
    """The values of a config key among ``runs``: 'v'; 'v1 (dataset a), v2 (dataset b)' when each dataset
    has one value; else 'v1 (5 runs), v2 (1 run)'."""
    values = [("none" if v is None else str(v)) for v in (_get(cfg, key) for cfg in runs["config"])]
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
            lambda c: _get(c, "model.backbone") is not None).any() else "")
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


# -- sections: a table file's list of {"title", "caption", "frame" (pandas DataFrame)} ------------------
# Every table function takes the same ``data``: {"runs": the frame of runs (srlib.results.collect_runs),
# "costs": cost records (collect_costs / costs_from_runs), "costs_from_runs": bool, "level": CI level}.
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
                    diff = paired_difference(
                        {s: score(r, metric) for s, r in zip(cells["seed"], cells["result"])},
                        {s: score(r, metric) for s, r in zip(base["seed"], base["result"])}, level)
                    diff_text = (f"{_pct(diff['mean'], diff['half'], signed=True)} (n={diff['n']}, p={_p(diff['p'])})"
                                 if diff["n"] else "no paired seeds")
                row[f"{dataset}: Δ vs baseline"] = diff_text
            rows.append(row)
        caption = (
            f"{METRIC_NAMES.get(metric, metric)} in %: mean ± half width of the {100 * level:.0f} % t-interval over seeds (n finished runs); "
            f"{CLIPPED}. "
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
                row[f"{name} %"] = _pct(mean, half)
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
            shown[column] = [("–" if math.isnan(v) else f"{100 * v:{'+' if signed else ''}.1f}") for v in shown[column]]
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
                row[f"{name} mIoU %"] = _pct(*mean_ci([score(r, f"exit{k}_miou") for r in cells["result"]], level)[:2])
            for metric, column in MECHANISM.items():
                row[column] = _pct(*mean_ci([score(r, metric) for r in cells["result"]], level)[:2])
            for gap in GAPS:
                mean, half, n = mean_ci([_final_term(r, gap) for r in cells["result"]], level)
                row[gap.replace("_", " ")] = "–" if not n else f"{mean:.3f}" + ("" if math.isnan(half) else f" ± {half:.3f}")
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


COST_KEYS = ("params_test", "params_train", "step_time_s")  # what every srlib cost file holds


def collect_costs(cost_files, served: dict | None = None, settings=()) -> list[dict]:
    """Cost JSON files (``srlib cost`` output) -> records with axes from their path (dataset, preset, [setting,]
    exit, sr); with ``served``, one record per setting a file serves (``srlib.results.serve_settings``)."""
    records = []
    for path in map(Path, cost_files):
        axes = path_axes(path)
        missing = set(COST_AXES) - set(axes)
        if missing:
            raise ValueError(f"{path}: path has no {sorted(missing)} key~value segments")
        cost = read_json(path)
        absent = [key for key in COST_KEYS if key not in cost] if isinstance(cost, dict) else list(COST_KEYS)
        if absent:
            raise ValueError(f"{path}: not a cost file (srlib cost output): no {', '.join(map(repr, absent))}")
        loss = _get(cost.get("config"), "loss")
        pixel = pixel_label(loss) if loss else "ce"  # the pixel loss the cost job trained with
        records.append({**axes, "sr": canonical_sr(axes["sr"]), "pixel": pixel, **cost, "source": str(path)})
    if served and records:
        import pandas as pd

        frame = serve_settings(pd.DataFrame(records), served, settings).sort_values("setting", kind="stable")
        return [{**r, "setting": str(r["setting"])} for r in frame.to_dict("records")]  # in the settings' order
    return records


def costs_from_runs(frame) -> list[dict]:
    """Fallback when no cost files: the cost measured inside finished runs, first seed per combination."""
    records = []
    for key, group in groups(frame[frame["status"] == "FINISHED"], ["dataset", "preset", "pixel", "sr"]):
        first = group.sort_values("seed").iloc[0]
        exit_type = "none" if key["sr"] == "baseline" else str(_get(first["config"], "model.exit"))
        records.append({**key, "exit": exit_type, **first["result"].get("cost", {}), "source": first["run_dir"]})
    return records


def _peak_mib(record: dict):
    if record.get("peak_memory_mib") is not None:
        return record["peak_memory_mib"]
    return None if record.get("peak_bytes") is None else record["peak_bytes"] / 2**20


COST_COLUMNS = (  # (header, getter, unit)
    ("params test", lambda r: r.get("params_test"), ""),
    ("params train", lambda r: r.get("params_train"), ""),
    ("MACs test", lambda r: r.get("macs_test"), "MAC"),
    ("MACs train", lambda r: r.get("macs_train"), "MAC"),
    ("FLOPs test", lambda r: r.get("flops_test", 2 * r["macs_test"] if r.get("macs_test") else None), "FLOP"),
    ("FLOPs train", lambda r: r.get("flops_train", 2 * r["macs_train"] if r.get("macs_train") else None), "FLOP"),
    ("step time", lambda r: r.get("step_time_s"), "s"),
    ("peak memory", _peak_mib, "MiB"),
    ("step tensor memory", lambda r: r.get("step_tensor_memory_mib"), "MiB"),
)


def cost_sections(data: dict) -> list[dict]:
    """One table per dataset x preset x pixel loss: rows = exit type x SR combination, each value with its
    ratio to that pixel loss's baseline."""
    import pandas as pd

    records, from_runs = data["costs"], data["costs_from_runs"]
    if not records:
        return []
    sections = []
    frame = pd.DataFrame(records)
    if "setting" in frame:  # the records come in their settings' order (collect_costs)
        frame["setting"] = pd.Categorical(frame["setting"], categories=list(dict.fromkeys(frame["setting"])))
    for key, group in groups(frame, ["dataset", "preset", "pixel"]):
        rows = group.to_dict("records")
        rows.sort(key=lambda r: (r["sr"] != "baseline", str(r["exit"]), sr_rank(r["sr"])))
        base = next((r for r in rows if r["sr"] == "baseline"), None)
        table = []
        for record in rows:
            row = {"exit": record["exit"], "SR": sr_label(record["sr"])}
            for header, getter, unit in COST_COLUMNS:
                value, ref = getter(record), getter(base) if base is not None else None
                ratio = f" (×{value / ref:.3f})" if value is not None and ref else ""
                spread = record.get("step_time_ratio") if header == "step time" else None
                if isinstance(spread, dict):  # a frame gives NaN to the rows without one
                    ratio = f" (×{spread['median']:.3f}, IQR {spread['q1']:.3f}–{spread['q3']:.3f})"
                row[header] = _si(value, unit) + ratio
            table.append(row)
        def distinct(*keys):
            values = {str(next((r[k] for k in keys if r.get(k) is not None), "n/a")) for r in rows}
            return ", ".join(sorted(values))

        caption = (
            "MACs = multiply-accumulates of convolutions and matrix products in one forward pass (the fvcore "
            "convention); FLOPs = 2 × MACs; counted with torch.utils.flop_counter on input "
            f"{distinct('flop_input_shape')}. Test = the inference model (backbone + decoder head, what is deployed); "
            "train = with exits, classifiers and projections. Step time = median training step (forward, loss, "
            f"backward, update) after warm-up at batch {distinct('step_time_batch')}; peak memory: "
            f"{', '.join(MEMORY_KINDS.get(kind, kind) for kind in distinct('memory_kind', 'kind').split(', '))}; "
            "step tensor memory: the peak of the tensors one training step allocates and holds at once "
            "(activations, gradients, temporaries; not the weights, optimizer state or batch that exist before it): "
            "what the method itself needs (CPU: PyTorch profiler allocation events; CUDA: max_memory_allocated; "
            "– = not measured). "
            "(×r) = ratio to the baseline row; for step time, where the row gives an IQR, the median of per-round "
            "ratios over interleaved rounds (one baseline step and one step of the row's config per round, in one "
            "process) and their interquartile range. "
            + ("Measured inside the training runs (first seed), concurrently with other jobs."
               if from_runs else "Measured by the cost rule (`srlib cost`), one job per row.")
        )
        sections.append({"title": group_title(key), "caption": caption,
                         "frame": pd.DataFrame(table)})
    return sections


# -- writers ----------------------------------------------------------------------------------------
def write_markdown(path: Path, title: str, intro: str, sections: list[dict], empty: str = "No finished runs.") -> Path:
    from tabulate import tabulate

    lines = [f"# {title}", "", intro, ""]
    for section in sections:
        lines += [f"## {section['title']}", "", section["caption"], "",
                  tabulate(section["frame"], headers="keys", tablefmt="github", showindex=False,
                           disable_numparse=True), ""]
    if not sections:
        lines += [empty, ""]
    path.write_text("\n".join(lines))
    return path


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


# -- everything -------------------------------------------------------------------------------------
# The markdown tables: file -> (title, sections(data)). A new table is one function and one entry here.
TABLES = {
    "ablation.md": ("Ablation", ablation_sections),
    "cost.md": ("Cost", cost_sections),
    "failure_modes.md": ("Failure modes", failure_sections),
    "per_class.md": ("Per-class IoU", per_class_sections),
    "claims.md": ("Claims of the paper", claims_sections),
    "exits.md": ("Exits and the SR mechanism", exits_sections),
}
EMPTY = {  # title -> what a table without sections says
    None: "No finished runs.",
    "Exits and the SR mechanism": "No finished run with exits recorded each exit's scores (runs record them since the settings axis "
                "was added; earlier records are shown as they were written).",
}
FIGURES = {  # file -> caption in the HTML pages
    "ablation.png": "mIoU per SR combination: bars = mean over seeds, whiskers = 95 % t-interval, dots = seeds; "
                    "n = finished seeds; * = paired t-test against the baseline p < 0.05; dashed line = baseline mean.",
    "pictures.png": "The same validation images under the baseline and +MEA+SR-F+SR-L (same seed); wrong pixels "
                    "outlined in yellow, ignored pixels white; class colours in the key.",
}


def page_name(table_file: str) -> str:
    """Each table's HTML page (what the Snakemake report shows): 'ablation.md' -> 'ablation.html'."""
    return table_file.removesuffix(".md") + ".html"


# What build_tables writes: the markdown tables, their pages, the figures and tables.html (everything on one page)
TABLE_FILES = (*TABLES, *map(page_name, TABLES), *FIGURES, "tables.html")


def _settings_text(bench: dict) -> str:
    """'official = loss.variant: official; paper = ...' from a benchmark's axes.settings."""
    from srlib.config import flatten

    return "; ".join(f"{name} = " + (", ".join(f"{key}: {value}" for key, value in flatten(fragment or {}).items())
                                     or "the base config")
                     for name, fragment in bench["axes"]["settings"].items())


def _served(bench: dict) -> tuple[dict, list[str]]:
    """(served, settings) of a settings sweep (``srlib.sweep.expand``): which runs and cost files show under which
    settings, and the settings in the benchmark's order; ({}, []) for any other benchmark."""
    if not (bench.get("axes") or {}).get("settings"):
        return {}, []
    from srlib.sweep import expand

    sweep = expand(bench)
    return sweep["served"], sweep["axes"]["setting"]


def _benchmark_dict(benchmark) -> dict:
    if benchmark is None:
        return {}
    if isinstance(benchmark, dict):
        return benchmark
    return read_yaml(benchmark)


def build_tables(runs, out_dir, benchmark=None, *, cost_files=None, pictures: int | None = None,
                 level: float = LEVEL) -> list[Path]:
    """Write TABLE_FILES into ``out_dir`` from run directories; return their paths.

    runs: run directories and/or glob patterns (e.g. "results/default/runs/**/seed~*").
    benchmark: the benchmark config (dict or YAML path) for titles; optional.
    cost_files: ``srlib cost`` JSON files under .../dataset~D/preset~P/exit~E/sr~S.json; None = use the cost
    measured inside the finished runs.
    """
    bench = _benchmark_dict(benchmark)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    served, settings = _served(bench)
    frame = collect_runs(runs, served, settings)
    if frame.empty:
        raise ValueError(f"no run directories in {runs!r}")
    name = bench.get("name", out_dir.name)
    trained = frame.drop_duplicates("run_dir")  # a run shared by several settings counts once
    counts = trained["status"].value_counts()
    summary = (f"Benchmark `{name}`. {bench.get('description', '')} Runs: {len(trained)} "
               f"({', '.join(f'{counts[s]} {s}' for s in RUN_STATUSES if s in counts)}).").replace("  ", " ")
    if settings:
        summary += (f" Settings (each a run-config fragment; a run that reads none of what they change is trained "
                    f"once and shown under each): {_settings_text(bench)}.")
    intro = summary
    failed = frame[frame["status"] == "FAILED"]
    if len(failed):
        intro += "\n\nFailed runs:\n\n" + "\n".join(f"- `{d}`: {e}" for d, e in zip(failed["run_dir"], failed["error"]))
    from_runs = cost_files is None
    costs = costs_from_runs(frame) if from_runs else collect_costs(cost_files, served, settings)
    data = {"runs": frame, "costs": costs, "costs_from_runs": from_runs, "level": level}
    documents = {file: (title, sections(data)) for file, (title, sections) in TABLES.items()}
    written = [write_markdown(out_dir / file, f"{title}: {name}", intro, sections, EMPTY.get(title, EMPTY[None]))
               for file, (title, sections) in documents.items()]
    written.append(plot_ablation(frame, out_dir / "ablation.png", level=level))
    count = pictures or bench.get("tables", {}).get("pictures", 6)
    written.append(plot_pictures(frame, out_dir / "pictures.png", count))
    for file, document in documents.items():
        written.append(write_page(out_dir / page_name(file), f"{document[0]}: {name}", summary, [document], empty=EMPTY))
    status = ("Run status", status_sections(data))
    figures = [(out_dir / file, caption) for file, caption in FIGURES.items()]
    written.append(write_page(out_dir / "tables.html", f"SR-Bench: {name}", summary,
                              [status, *documents.values()], figures, empty=EMPTY))
    return written
