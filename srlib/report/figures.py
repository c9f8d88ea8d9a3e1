"""The benchmark's figures from a frame of runs (``srlib.report.frames.collect_runs``): the ablation bar chart and
the picture grid of baseline vs. SR predictions (drawn by ``srlib.pictures``). matplotlib (Agg) is imported when a
figure is drawn.
"""

import math
from pathlib import Path

from srlib.config import IGNORE_INDEX
from srlib.palette import voc_colormap
from srlib.pictures import picture_grid, pyplot
from srlib.report.format import METRIC_NAMES, interval
from srlib.report.frames import group_title, groups, ordered_sr, score, seed_scores, status_note
from srlib.report.stats import ALPHA, LEVEL, mean_ci, paired_difference, significant
from srlib.sweep.cells import FULL_SR, sr_label


def _significance(group, names: list[str], metric: str, level: float) -> dict[str, float]:
    """p of the paired t-test of each SR combination against the baseline (NaN without one)."""
    base = group[group["sr"] == "baseline"]
    if base.empty:
        return {sr: math.nan for sr in names}
    reference = seed_scores(base, metric)
    return {sr: paired_difference(seed_scores(group[group["sr"] == sr], metric), reference, level)["p"]
            for sr in names}


def plot_ablation(frame, path: Path, metric: str = "miou", level: float = LEVEL) -> Path:
    """Bars of mean ``metric`` (%) per SR combination with t-interval whiskers and the seeds as dots; n under
    each bar, * over a combination whose paired t-test against the baseline gives p < ALPHA; the baseline's
    mean as a dashed line. One panel per dataset x preset x pixel loss."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    plt = pyplot()
    panels = list(groups(frame, ["dataset", "preset", "pixel"]))
    cols = min(3, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4.2 * rows + 0.6), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (key, group) in zip(axes.flat, panels):
        names = ordered_sr(group)
        seeds = [[100 * v for v in (score(r, metric) for r in group[group["sr"] == sr]["result"])
                  if v is not None and math.isfinite(v)] for sr in names]
        stats_ = [mean_ci([v / 100 for v in values], level) for values in seeds]
        means = [100 * m for m, _, _ in stats_]
        halves = [0 if math.isnan(h) else 100 * h for _, h, _ in stats_]
        colors = ["0.6" if sr == "baseline" else "tab:blue" for sr in names]
        ax.bar(range(len(names)), means, yerr=halves, capsize=4, color=colors, alpha=0.85)
        for i, values in enumerate(seeds):
            offsets = [0.18 * (j - (len(values) - 1) / 2) / max(1, len(values) - 1) for j in range(len(values))]
            ax.scatter([i + o for o in offsets], values, s=12, color="black", zorder=3)
        p_values = _significance(group, names, metric, level)
        for i, sr in enumerate(names):
            note = status_note(group[group["sr"] == sr])
            if note:
                ax.annotate(note, (i, 0), xytext=(0, 4), textcoords="offset points", ha="center", rotation=90,
                            color="tab:red", fontsize=8)
            if significant(p_values[sr]):
                top = max([means[i] + halves[i], *seeds[i]])
                ax.annotate("*", (i, top), xytext=(0, 1), textcoords="offset points", ha="center", fontsize=13)
        if "baseline" in names and not math.isnan(means[names.index("baseline")]):
            ax.axhline(means[names.index("baseline")], color="0.3", linestyle="--", linewidth=1)
        labels = [f"{sr_label(sr)}\nn={len(values)}" for sr, values in zip(names, seeds)]
        ax.set_xticks(range(len(names)), labels, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel(f"{METRIC_NAMES.get(metric, metric)} (%)")
        finite = [v for values in seeds for v in values] + [m + h for m, h in zip(means, halves) if not math.isnan(m)]
        if finite:
            spread = max(finite) - min(finite) + 1
            ax.set_ylim(max(0, min(finite) - 0.3 * spread), min(100, max(finite) + 0.2 * spread))
        ax.set_title(group_title(key), fontsize=9)
    handles = [Patch(color="0.6", label="baseline"), Patch(color="tab:blue", label="SR combination"),
               Line2D([], [], color="black", marker="o", linestyle="", markersize=4, label="one seed"),
               Line2D([], [], color="0.3", linestyle="--", label="baseline mean"),
               Line2D([], [], color="none", marker="$*$", markersize=9, markeredgecolor="black",
                      label=f"paired t-test vs baseline p < {ALPHA}")]
    ncol = 3 if cols == 1 else len(handles)
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle(f"{METRIC_NAMES.get(metric, metric)}: mean ± {100 * level:.0f} % t-interval over seeds "
                 f"(n = finished seeds)", fontsize=10)
    fig.tight_layout(rect=(0, 0.22 * math.ceil(len(handles) / ncol) / fig.get_figheight(), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _prediction_runs(frame, treated_sr: str):
    """First dataset x preset x loss and seed where the baseline and ``treated_sr`` both have predictions.npz:
    (key, seed, runs); runs = the baseline and the treated run, and in a settings sweep, per setting in order, its
    baseline (unless the row above already shows that run) and its treated run (each run once). None when there
    is none."""
    finished = frame[frame["status"] == "FINISHED"]
    has = finished["run_dir"].map(lambda d: (Path(d) / "predictions.npz").exists())
    finished = finished[has.astype(bool)]
    for key, group in groups(finished, ["dataset", "preset", "pixel"], by_setting=False):
        for seed in sorted(set(group["seed"])):
            runs = group[group["seed"] == seed].sort_values("setting", kind="stable")
            shown = []
            for _, cells in runs.groupby("setting", sort=True, observed=True):
                pair = [cells[cells["sr"] == sr] for sr in ("baseline", treated_sr)]
                shown += [cell.iloc[0] for cell in pair if len(cell)]
            firsts = {}
            for run in shown:  # a shared run once, where it first shows
                firsts.setdefault(run["run_dir"], run)
            shown = list(firsts.values())
            if {run["sr"] for run in shown} >= {"baseline", treated_sr}:
                return key, seed, shown
    return None


def _setting_line(run) -> str:
    return f"\n{run['setting']}" if str(run.get("setting") or "") else ""


def plot_pictures(frame, path: Path, count: int = 6) -> Path:
    """The benchmark's picture grid (``picture_grid``): the same validation images under the baseline and
    +MEA+SR-F+SR-L (or the last SR combination present), same seed; in a settings sweep one row of the latter per
    setting (the shared baseline once)."""
    import numpy as np

    plt = pyplot()
    present = ordered_sr(frame)
    treated = FULL_SR if FULL_SR in present else next((sr for sr in reversed(present) if sr != "baseline"), None)
    found = _prediction_runs(frame, treated) if treated else None
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
    classes = runs[0]["result"].get("classes") or []
    num_classes = len(classes) or int(masks[masks != IGNORE_INDEX].max(initial=0)) + 1
    classes = classes or [str(i) for i in range(num_classes)]
    predictions = [(f"{sr_label(r['sr'])}{_setting_line(r)}\n"
                    f"mIoU {interval(score(r['result'], 'miou'), math.nan, unit=' %')}", a["preds"][:count])
                   for r, a in zip(runs, arrays)]
    note = "" if same else " — WARNING: the two runs kept different images"
    title = f"{key['dataset']} · {key['preset']} · {key['pixel']} · seed {seed}: first {count} validation images{note}"
    return picture_grid(path, images[:count], masks[:count], predictions,
                        runs[0]["result"].get("palette") or voc_colormap(num_classes), classes, title)
