"""Benchmark tables and figures from run directories: ablation, cost, failure modes, per class, plots.

A run directory holds (written by ``srlib run``) ``outcome.json`` ({"status": FINISHED|FAILED, "error",
"config_hash"}), ``metrics.json`` for a finished run (the source of truth), ``config.yaml`` / ``run.yaml``
and ``predictions.npz`` ({"images": uint8 K x H x W x 3, "masks", "preds": int K x H x W}). A run's axis
values (dataset, preset, pixel, sr, seed) come from ``key~value`` segments of its path, as the workflow
writes them, or else from its config. Scores are fractions in the files and percent in the tables.

Statistics over seeds: mean +- half width of the 95 % t-interval (n - 1 degrees of freedom); the
difference to the baseline is paired by seed (seeds where both runs finished) with a two-sided paired
t-test. A failed or missing run is counted in its cell ("FAILED 1/3"), never dropped silently.

The SR naming helpers at the top are imported by the workflow at parse time, so pandas, scipy and
matplotlib are imported inside the functions that use them.
"""

import glob
import math
from pathlib import Path

import yaml

from srlib.results import load_run, read_json
from srlib.sweep import AXES, COST_AXES, FULL_SR, SR_ORDER, canonical_sr, path_axes, pixel_label, sr_label, sr_rank

FAILURE_METRICS = {
    "thin_part_iou": "thin-part IoU",
    "body_iou": "body IoU",
    "small_object_iou": "small-object IoU",
    "hallucination_rate": "hallucinated-class rate",
}
TABLE_FILES = ("ablation.md", "cost.md", "failure_modes.md", "per_class.md", "ablation.png", "pictures.png",
               "tables.html")
LEVEL = 0.95
METRIC_NAMES = {"miou": "mIoU", "pixel_accuracy": "pixel accuracy", **FAILURE_METRICS}


# -- statistics -------------------------------------------------------------------------------------
def mean_ci(values, level: float = LEVEL) -> tuple[float, float, int]:
    """(mean, half width of the t confidence interval, n) of the finite values; half width NaN if n < 2."""
    import numpy as np
    from scipy import stats

    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(data)
    if n == 0:
        return math.nan, math.nan, 0
    if n < 2:
        return float(data[0]), math.nan, 1
    sem = data.std(ddof=1) / math.sqrt(n)
    return float(data.mean()), float(stats.t.ppf(0.5 + level / 2, n - 1) * sem), n


def paired_difference(treated: dict, baseline: dict, level: float = LEVEL) -> dict:
    """treated - baseline over the seeds both have: {"mean", "half", "p", "n"} (p: paired t-test).

    ``treated`` and ``baseline`` map seed -> score (None = no score). p is NaN for n < 2 or when every
    difference is the same (no variance to test).
    """
    import numpy as np
    from scipy import stats

    seeds = sorted(s for s in set(treated) & set(baseline) if treated[s] is not None and baseline[s] is not None)
    a = np.array([treated[s] for s in seeds], dtype=float)
    b = np.array([baseline[s] for s in seeds], dtype=float)
    mean, half, n = mean_ci(a - b, level)
    p = math.nan
    if n >= 2 and np.ptp(a - b) > 0:
        p = float(stats.ttest_rel(a, b).pvalue)
    return {"mean": mean, "half": half, "p": p, "n": n}


# -- collecting runs --------------------------------------------------------------------------------
def expand_runs(runs) -> list[Path]:
    """Run directories from a list of directories and/or glob patterns (a pattern may match none)."""
    if isinstance(runs, (str, Path)):
        runs = [runs]
    dirs = []
    for item in runs:
        item = str(item)
        matches = sorted(glob.glob(item, recursive=True)) if glob.has_magic(item) else [item]
        dirs += [Path(m) for m in matches]
    return dirs


def collect_runs(runs):
    """pandas DataFrame, one row per run (columns: run_dir, AXES, status, error, config, result)."""
    import pandas as pd

    records = [load_run(d) for d in expand_runs(runs)]
    frame = pd.DataFrame(records, columns=["run_dir", *AXES, "status", "error", "config", "result"])
    duplicated = frame[frame.duplicated(list(AXES), keep=False)]
    if len(duplicated):
        raise ValueError(f"several run directories have the same parameters: {sorted(duplicated['run_dir'])}")
    return frame


def _score(result: dict | None, key: str):
    return None if result is None else result.get("metrics", {}).get(key)


# -- formatting -------------------------------------------------------------------------------------
def _pct(mean: float, half: float, signed: bool = False) -> str:
    sign = "+" if signed else ""
    if math.isnan(mean):
        return "–"
    text = f"{100 * mean:{sign}.1f}"
    return text + (f" ± {100 * half:.1f}" if not math.isnan(half) else " ± n/a")


def _p(p: float) -> str:
    return "n/a" if math.isnan(p) else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def _status_note(group) -> str:
    """'FAILED 1/3' / 'MISSING 2/3' for the runs of one cell; '' when all finished."""
    total = len(group)
    return " · ".join(f"{s} {(group['status'] == s).sum()}/{total}" for s in ("FAILED", "MISSING")
                      if (group["status"] == s).any())


def _cell(group, key: str, level: float) -> str:
    """'72.3 ± 1.2 (n=3)' over the finished runs, prefixed by the failure note if any."""
    mean, half, n = mean_ci([_score(r, key) for r in group["result"]], level)
    note = _status_note(group)
    value = f"{_pct(mean, half)} (n={n})" if n else ""
    return " · ".join(part for part in (note, value) if part) or "–"


def _si(value, unit: str) -> str:
    """1.5e9, "MAC" -> '1.5 GMAC'; mebibytes stay in MiB."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if unit == "MiB":
        return f"{value:.0f} MiB"
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


# -- sections: (title, caption, DataFrame) ----------------------------------------------------------
def _groups(frame, keys: list[str]):
    for values, group in frame.groupby(keys, sort=True):
        yield dict(zip(keys, values)), group


def _ordered_sr(frame) -> list[str]:
    return sorted(set(frame["sr"]), key=sr_rank)


def ablation_sections(frame, metric: str = "miou", level: float = LEVEL) -> list[dict]:
    """One table per preset x pixel loss: rows = SR combinations, two columns per dataset."""
    import pandas as pd

    sections = []
    for key, group in _groups(frame, ["preset", "pixel"]):
        rows = []
        for sr in _ordered_sr(group):
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
                        {s: _score(r, metric) for s, r in zip(cells["seed"], cells["result"])},
                        {s: _score(r, metric) for s, r in zip(base["seed"], base["result"])}, level)
                    diff_text = (f"{_pct(diff['mean'], diff['half'], signed=True)} (n={diff['n']}, p={_p(diff['p'])})"
                                 if diff["n"] else "no paired seeds")
                row[f"{dataset}: Δ vs baseline"] = diff_text
            rows.append(row)
        caption = (
            f"{METRIC_NAMES.get(metric, metric)} in %: mean ± half width of the {100 * level:.0f} % t-interval over seeds (n finished runs). "
            f"Δ = paired difference to the baseline over the seeds where both finished, p = two-sided paired "
            f"t-test. FAILED k/n = k of n seeds failed (non-finite loss or crash); MISSING = not run yet. "
            + run_caption(group)
        )
        sections.append({"title": f"{key['preset']} · pixel loss {key['pixel']}", "caption": caption,
                         "frame": pd.DataFrame(rows).fillna("not in sweep")})
    return sections


def failure_sections(frame, level: float = LEVEL) -> list[dict]:
    """One table per preset x pixel loss x dataset: rows = SR combinations, columns = failure-mode scores."""
    import pandas as pd

    sections = []
    for key, group in _groups(frame, ["preset", "pixel", "dataset"]):
        rows = []
        for sr in _ordered_sr(group):
            cells = group[group["sr"] == sr]
            row = {"SR": sr_label(sr), "runs": f"{(cells['status'] == 'FINISHED').sum()}/{len(cells)} finished"}
            for metric, name in {"miou": "mIoU", **FAILURE_METRICS}.items():
                mean, half, n = mean_ci([_score(r, metric) for r in cells["result"]], level)
                row[f"{name} %"] = _pct(mean, half)
            rows.append(row)
        caption = (
            "Failure-1 (thin parts, small objects) and Failure-2 (hallucinated classes) scores in %, mean ± "
            f"{100 * level:.0f} % t-interval over finished seeds. thin-part IoU = IoU on thin-part pixels "
            "(generated dataset's part mask); body IoU = foreground outside the parts; small-object IoU = IoU on "
            "ground-truth components below 1 % of the image; hallucinated-class rate = share of pixels predicted "
            "as a class absent from that image's ground truth (lower is better). – = not computable. "
            + run_caption(group)
        )
        sections.append({"title": f"{key['dataset']} · {key['preset']} · pixel loss {key['pixel']}",
                         "caption": caption, "frame": pd.DataFrame(rows)})
    return sections


def per_class_sections(frame) -> list[dict]:
    """One table per preset x pixel loss x dataset: rows = classes, columns = SR combinations (mean IoU %)."""
    import numpy as np
    import pandas as pd

    sections = []
    for key, group in _groups(frame, ["preset", "pixel", "dataset"]):
        finished = group[group["status"] == "FINISHED"]
        if finished.empty:
            continue
        classes = finished["result"].iloc[0].get("classes") or []
        table = {"class": classes}
        for sr in _ordered_sr(finished):
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
        counts = ", ".join(f"{sr_label(sr)} n={(finished['sr'] == sr).sum()}" for sr in _ordered_sr(finished))
        caption = (f"Per-class IoU in %, mean over finished seeds ({counts}); – = class absent from ground truth "
                   f"and predictions. Δ full SR = {sr_label(FULL_SR)} minus baseline. " + run_caption(group))
        sections.append({"title": f"{key['dataset']} · {key['preset']} · pixel loss {key['pixel']}",
                         "caption": caption, "frame": shown})
    return sections


def collect_costs(cost_files) -> list[dict]:
    """Cost JSON files (``srlib cost`` output) -> records with axes from their path (dataset, preset, exit, sr)."""
    records = []
    for path in map(Path, cost_files):
        axes = path_axes(path)
        missing = set(COST_AXES) - set(axes)
        if missing:
            raise ValueError(f"{path}: path has no {sorted(missing)} key~value segments")
        cost = read_json(path)
        loss = _get(cost.get("config"), "loss")
        pixel = pixel_label(loss) if loss else "ce"  # the pixel loss the cost job trained with
        records.append({**axes, "sr": canonical_sr(axes["sr"]), "pixel": pixel, **cost, "source": str(path)})
    return records


def costs_from_runs(frame) -> list[dict]:
    """Fallback when no cost files: the cost measured inside finished runs, first seed per combination."""
    records = []
    for key, group in _groups(frame[frame["status"] == "FINISHED"], ["dataset", "preset", "pixel", "sr"]):
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
)


def cost_sections(records: list[dict], from_runs: bool) -> list[dict]:
    """One table per dataset x preset x pixel loss: rows = exit type x SR combination, each value with its
    ratio to that pixel loss's baseline."""
    import pandas as pd

    sections = []
    for key, group in _groups(pd.DataFrame(records), ["dataset", "preset", "pixel"]):
        rows = group.to_dict("records")
        rows.sort(key=lambda r: (r["sr"] != "baseline", str(r["exit"]), sr_rank(r["sr"])))
        base = next((r for r in rows if r["sr"] == "baseline"), None)
        table = []
        for record in rows:
            row = {"exit": record["exit"], "SR": sr_label(record["sr"])}
            for header, getter, unit in COST_COLUMNS:
                value, ref = getter(record), getter(base) if base is not None else None
                ratio = f" (×{value / ref:.3f})" if value is not None and ref else ""
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
            f"{distinct('memory_kind', 'kind')}. "
            "(×r) = ratio to the baseline row. "
            + ("Measured inside the training runs (first seed), concurrently with other jobs."
               if from_runs else "Measured by the cost rule (`srlib cost`), one job per row.")
        )
        sections.append({"title": f"{key['dataset']} · {key['preset']} · pixel loss {key['pixel']}", "caption": caption,
                         "frame": pd.DataFrame(table)})
    return sections


# -- writers ----------------------------------------------------------------------------------------
def write_markdown(path: Path, title: str, intro: str, sections: list[dict]) -> Path:
    from tabulate import tabulate

    lines = [f"# {title}", "", intro, ""]
    for section in sections:
        lines += [f"## {section['title']}", "", section["caption"], "",
                  tabulate(section["frame"], headers="keys", tablefmt="github", showindex=False,
                           disable_numparse=True), ""]
    if not sections:
        lines += ["No finished runs.", ""]
    path.write_text("\n".join(lines))
    return path


def write_html(path: Path, title: str, documents: list[tuple[str, list[dict]]]) -> Path:
    """All tables in one self-contained HTML page (for the Snakemake report)."""
    from html import escape

    from tabulate import tabulate

    body = [f"<h1>{escape(title)}</h1>"]
    for heading, sections in documents:
        body.append(f"<h2>{escape(heading)}</h2>")
        for section in sections:
            body += [f"<h3>{escape(section['title'])}</h3>", f"<p>{escape(section['caption'])}</p>",
                     tabulate(section["frame"], headers="keys", tablefmt="html", showindex=False,
                              disable_numparse=True)]
    style = "table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px;font:13px sans-serif}"
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
                    f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
    return path


# -- figures ----------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_ablation(frame, path: Path, metric: str = "miou", level: float = LEVEL) -> Path:
    """Bars of mean ``metric`` per SR combination with t-interval whiskers; one panel per dataset x preset x loss."""
    plt = _pyplot()
    groups = list(_groups(frame, ["dataset", "preset", "pixel"]))
    cols = min(3, max(1, len(groups)))
    rows = max(1, math.ceil(len(groups) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(groups):]:
        ax.axis("off")
    for ax, (key, group) in zip(axes.flat, groups):
        names = _ordered_sr(group)
        stats_ = [mean_ci([_score(r, metric) for r in group[group["sr"] == sr]["result"]], level) for sr in names]
        means = [100 * m for m, _, _ in stats_]
        halves = [0 if math.isnan(h) else 100 * h for _, h, _ in stats_]
        colors = ["0.6" if sr == "baseline" else "tab:blue" for sr in names]
        ax.bar(range(len(names)), means, yerr=halves, capsize=4, color=colors)
        for i, sr in enumerate(names):
            note = _status_note(group[group["sr"] == sr])
            if note:
                ax.annotate(note, (i, 0), xytext=(0, 4), textcoords="offset points", ha="center", rotation=90,
                            color="tab:red", fontsize=8)
        if "baseline" in names and not math.isnan(means[names.index("baseline")]):
            ax.axhline(means[names.index("baseline")], color="0.3", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(names)), [sr_label(sr) for sr in names], rotation=35, ha="right", fontsize=8)
        ax.set_ylabel(f"{METRIC_NAMES.get(metric, metric)} (%)")
        finite = [m for m in means if not math.isnan(m)]
        if finite:
            spread = max(finite) - min(finite) + max(halves + [1])
            ax.set_ylim(max(0, min(finite) - 2 * spread), min(100, max(finite) + 1.5 * spread))
        ax.set_title(f"{key['dataset']} · {key['preset']} · {key['pixel']}", fontsize=9)
    fig.suptitle(f"{METRIC_NAMES.get(metric, metric)}: mean ± {100 * level:.0f} % t-interval over seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _palette(result: dict, num_classes: int):
    """The run's palette if metrics.json has one, else the PASCAL VOC bit-pattern palette."""
    import numpy as np

    table = np.full((256, 3), 255, dtype=np.uint8)  # 255 (ignore) stays white
    if result.get("palette"):
        colors = np.asarray(result["palette"], dtype=np.uint8)
    else:
        colors = np.zeros((max(num_classes, 1), 3), dtype=np.uint8)
        for i in range(len(colors)):
            c, bit = i, 7
            while c:
                for channel in range(3):
                    colors[i, channel] |= ((c >> channel) & 1) << bit
                c, bit = c >> 3, bit - 1
    table[: len(colors)] = colors[:256]
    return table


def _prediction_pair(frame, treated_sr: str):
    """First dataset x preset x loss and seed where baseline and ``treated_sr`` both have predictions.npz."""
    finished = frame[frame["status"] == "FINISHED"]
    for key, group in _groups(finished, ["dataset", "preset", "pixel"]):
        for seed in sorted(set(group["seed"])):
            pair = [group[(group["sr"] == sr) & (group["seed"] == seed)] for sr in ("baseline", treated_sr)]
            if all(len(p) and (Path(p["run_dir"].iloc[0]) / "predictions.npz").exists() for p in pair):
                return key, seed, [p.iloc[0] for p in pair]
    return None


def plot_pictures(frame, path: Path, count: int = 6) -> Path:
    """Grid: image | ground truth | baseline | +MEA+SR-F+SR-L on the same validation images, wrong pixels outlined."""
    import numpy as np

    plt = _pyplot()
    present = _ordered_sr(frame)
    treated = FULL_SR if FULL_SR in present else next((sr for sr in reversed(present) if sr != "baseline"), None)
    found = _prediction_pair(frame, treated) if treated else None
    if found is None:
        fig, ax = plt.subplots(figsize=(8, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "No picture grid: no finished baseline and SR run of the same seed has predictions.npz\n"
                f"(looked for baseline and {sr_label(treated) if treated else 'any SR combination'}).",
                ha="center", va="center", fontsize=9)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
    key, seed, runs = found
    arrays = [np.load(Path(run["run_dir"]) / "predictions.npz") for run in runs]
    images, masks = arrays[0]["images"], arrays[0]["masks"]
    same = all(np.array_equal(a["masks"], masks) for a in arrays[1:])
    count = min(count, len(images))
    num_classes = len(runs[0]["result"].get("classes") or []) or int(masks[masks != 255].max(initial=0)) + 1
    palette = _palette(runs[0]["result"], num_classes)
    titles = ["image", "ground truth", *(f"{sr_label(r['sr'])} (mIoU {100 * _score(r['result'], 'miou'):.1f})"
                                         for r in runs)]
    fig, axes = plt.subplots(count, 4, figsize=(8, 2 * count), squeeze=False)
    for i in range(count):
        panels = [(images[i], None), (palette[masks[i].clip(0, 255)], None)]
        panels += [(palette[d["preds"][i].clip(0, 255)], (d["preds"][i] != masks[i]) & (masks[i] != 255))
                   for d in arrays]
        for j, (panel, wrong) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(panel, interpolation="nearest")
            if wrong is not None and wrong.any():  # outline the wrong pixels, whatever the palette's colours
                ax.contour(np.kron(wrong, np.ones((4, 4))), levels=[0.5], colors="yellow", linewidths=0.8,
                           extent=(-0.5, wrong.shape[1] - 0.5, wrong.shape[0] - 0.5, -0.5))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=8)
    note = "" if same else " — WARNING: the two runs kept different images"
    fig.suptitle(f"{key['dataset']} · {key['preset']} · {key['pixel']} · seed {seed}; yellow outline = wrong "
                 f"pixels, white = ignore{note}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- everything -------------------------------------------------------------------------------------
def _benchmark_dict(benchmark) -> dict:
    if benchmark is None:
        return {}
    if isinstance(benchmark, dict):
        return benchmark
    return yaml.safe_load(Path(benchmark).read_text()) or {}


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
    frame = collect_runs(runs)
    if frame.empty:
        raise ValueError(f"no run directories in {runs!r}")
    name = bench.get("name", out_dir.name)
    counts = frame["status"].value_counts()
    intro = (f"Benchmark `{name}`. {bench.get('description', '')} Runs: {len(frame)} "
             f"({', '.join(f'{counts[s]} {s}' for s in ('FINISHED', 'FAILED', 'MISSING') if s in counts)}).")
    intro = intro.replace("  ", " ")
    failed = frame[frame["status"] == "FAILED"]
    if len(failed):
        intro += "\n\nFailed runs:\n\n" + "\n".join(f"- `{d}`: {e}" for d, e in zip(failed["run_dir"], failed["error"]))
    from_runs = cost_files is None
    cost_records = costs_from_runs(frame) if from_runs else collect_costs(cost_files)
    documents = {
        "ablation.md": ("Ablation", ablation_sections(frame, level=level)),
        "cost.md": ("Cost", cost_sections(cost_records, from_runs) if cost_records else []),
        "failure_modes.md": ("Failure modes", failure_sections(frame, level=level)),
        "per_class.md": ("Per-class IoU", per_class_sections(frame)),
    }
    written = [write_markdown(out_dir / file, f"{title}: {name}", intro, sections)
               for file, (title, sections) in documents.items()]
    written.append(plot_ablation(frame, out_dir / "ablation.png", level=level))
    count = pictures or bench.get("tables", {}).get("pictures", 6)
    written.append(plot_pictures(frame, out_dir / "pictures.png", count))
    written.append(write_html(out_dir / "tables.html", f"SR-Bench: {name}", list(documents.values())))
    return written
