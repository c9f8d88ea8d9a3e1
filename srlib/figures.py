"""Benchmark figures from a frame of runs (``srlib.results.collect_runs``): the ablation bar chart and the
picture grid of baseline vs. SR predictions. matplotlib (Agg) is imported when a figure is drawn."""

import math
from pathlib import Path

from srlib.results import METRIC_NAMES, groups, ordered_sr, score, status_note
from srlib.stats import LEVEL, mean_ci
from srlib.sweep import FULL_SR, sr_label


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_ablation(frame, path: Path, metric: str = "miou", level: float = LEVEL) -> Path:
    """Bars of mean ``metric`` per SR combination with t-interval whiskers; one panel per dataset x preset x loss."""
    plt = _pyplot()
    panels = list(groups(frame, ["dataset", "preset", "pixel"]))
    cols = min(3, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (key, group) in zip(axes.flat, panels):
        names = ordered_sr(group)
        stats_ = [mean_ci([score(r, metric) for r in group[group["sr"] == sr]["result"]], level) for sr in names]
        means = [100 * m for m, _, _ in stats_]
        halves = [0 if math.isnan(h) else 100 * h for _, h, _ in stats_]
        colors = ["0.6" if sr == "baseline" else "tab:blue" for sr in names]
        ax.bar(range(len(names)), means, yerr=halves, capsize=4, color=colors)
        for i, sr in enumerate(names):
            note = status_note(group[group["sr"] == sr])
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
    """Colour table of a run: the palette its metrics.json records, else the PASCAL VOC colour map."""
    from srlib.palette import color_table, voc_colormap

    return color_table(result.get("palette") or voc_colormap(max(num_classes, 1)))


def _prediction_pair(frame, treated_sr: str):
    """First dataset x preset x loss and seed where baseline and ``treated_sr`` both have predictions.npz."""
    finished = frame[frame["status"] == "FINISHED"]
    for key, group in groups(finished, ["dataset", "preset", "pixel"]):
        for seed in sorted(set(group["seed"])):
            pair = [group[(group["sr"] == sr) & (group["seed"] == seed)] for sr in ("baseline", treated_sr)]
            if all(len(p) and (Path(p["run_dir"].iloc[0]) / "predictions.npz").exists() for p in pair):
                return key, seed, [p.iloc[0] for p in pair]
    return None


def plot_pictures(frame, path: Path, count: int = 6) -> Path:
    """Grid: image | ground truth | baseline | +MEA+SR-F+SR-L on the same validation images, wrong pixels outlined."""
    import numpy as np

    plt = _pyplot()
    present = ordered_sr(frame)
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
    titles = ["image", "ground truth", *(f"{sr_label(r['sr'])} (mIoU {100 * score(r['result'], 'miou'):.1f})"
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
