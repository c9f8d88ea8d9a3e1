"""Validation mIoU against training iterations for SR cells of a benchmark, one seed.

Trains each cell once with the benchmark's resolved run config (its ``base`` and first dataset / preset /
pixel loss), evaluating the inference model on the first ``--val`` validation images every ``--every``
iterations, and writes ``<out>.csv`` and ``<out>.png``: where the schedule plateaus and what a longer one
would buy. Example (what ``results/default/learning_curve.*`` came from):

    python benchmarks/perf/learning_curve.py --benchmark benchmarks/default.yaml --iters 1200 --every 100 \\
        --sr baseline mea+srf+srl --out results/default/learning_curve
"""

import argparse
import csv
import sys
import time
from pathlib import Path

import yaml
from torch.utils.data import Subset

from srlib.registries import resolve_config
from srlib.evaluate import evaluate
from srlib.train import Run

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def run_config(benchmark_path: str, sr: str, iters: int, seed: int) -> dict:
    """The run config the sweep gives the benchmark's first run of SR cell ``sr``, at ``iters`` and ``seed``."""
    from snakemake.utils import validate

    from srlib.sweep import benchmark, cells, run_configs

    bench = yaml.safe_load(Path(benchmark_path).read_text())
    validate(bench, str(SCHEMA), set_default=True)  # the workflow's defaults
    expanded = benchmark.expand(bench)
    run = next((r for r in expanded["runs"] if r["sr"] == cells.canonical_sr(sr)), None)
    if run is None:
        raise SystemExit(f"SR cell {sr!r} is not in {benchmark_path}'s sr axis")
    config = run_configs.run_config(expanded, run)
    if not Path(config["data"]["root"]).is_dir():
        raise SystemExit(f"{config['data']['root']} does not exist: run the benchmark (or its generate_data job) first")
    return resolve_config(config, [f"optim.iters={iters}", f"seed={seed}", "tracking.enabled=false"])


def curve(cfg: dict, every: int, n_val: int, label: str) -> list[dict]:
    run = Run(cfg, None)
    subset = Subset(run.eval_set, range(min(n_val, len(run.eval_set))))
    rows, trained, tick = [], 0.0, time.perf_counter()
    run.model.train()
    for batch in run.loader():
        run.timed_step(batch)
        if run.iteration % every and run.iteration != cfg["optim"]["iters"]:
            continue
        trained += time.perf_counter() - tick
        metrics, _ = evaluate(run.model.inference_model(), subset, run.info, device=run.device,
                              batch_size=cfg["data"]["eval_batch_size"], keep=0)
        row = {"sr": label, "iteration": run.iteration, "train_s": round(trained, 1),
               **{key: round(100 * metrics[key], 2) for key in ("miou", "thin_part_iou", "body_iou", "small_object_iou",
                                                                 "hallucination_rate") if metrics.get(key) is not None}}
        print(row, flush=True)
        rows.append(row)
        tick = time.perf_counter()
    return rows


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for sr in dict.fromkeys(r["sr"] for r in rows):
        points = [r for r in rows if r["sr"] == sr]
        ax.plot([r["iteration"] for r in points], [r["miou"] for r in points], marker="o", label=f"{sr}: mIoU")
        ax.plot([r["iteration"] for r in points], [r.get("thin_part_iou") for r in points], ls="--", alpha=0.6,
                label=f"{sr}: thin-part IoU")
    ax.set_xlabel("training iteration")
    ax.set_ylabel("validation %")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="benchmarks/default.yaml")
    parser.add_argument("--sr", nargs="+", default=["baseline", "mea+srf+srl"])
    parser.add_argument("--iters", type=int, default=1200)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--val", type=int, default=250, help="validation images evaluated (the first N)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/default/learning_curve", help="writes OUT.csv and OUT.png")
    args = parser.parse_args(argv)
    rows = []
    for sr in args.sr:
        rows += curve(run_config(args.benchmark, sr, args.iters, args.seed), args.every, args.val, sr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, out.with_suffix(".png"), f"{args.benchmark}: seed {args.seed}, first {args.val} validation images")
    print(f"wrote {out.with_suffix('.csv')} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
