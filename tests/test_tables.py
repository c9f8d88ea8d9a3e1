"""srlib.report on synthetic run directories: statistics, FAILED / MISSING cells, cost ratios, figures."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from srlib.report import costs, figures, format, stats, tables
from srlib.report import frames
from srlib.sweep.cells import FULL_SR

REPO = Path(__file__).resolve().parents[1]

BASE = {0: 0.70, 1: 0.72, 2: 0.74}
FULL = {0: 0.71, 1: 0.74, 2: 0.75}  # differences 0.01, 0.02, 0.01 -> t = 4, df = 2


def _config(sr: str, seed: int) -> dict:
    terms = set(sr.split("+"))
    return {
        "seed": seed, "threads": 1, "device": "cpu",
        "data": {"name": "generated", "crop_size": 32, "batch_size": 4, "eval_split": "val"},
        "model": {"preset": "tiny", "exit": "light", "backbone": None, "pretrained": None},
        "loss": {"mea": "mea" in terms, "srf": "srf" in terms, "srl": "srl" in terms, "pixel": "ce",
                 "variant": "official", "tau": 1.0},
        "optim": {"name": "sgd", "iters": 3, "lr": 0.01, "head_lr_mult": 10.0, "sr_warmup_iters": 0},
    }


def _run_dir(root, sr, seed):
    return root / "runs" / "dataset~gen" / "preset~tiny" / "pixel~ce" / f"sr~{sr}" / f"seed~{seed}"


def make_run(root, sr, seed, miou=None, status="FINISHED", predictions=False):
    """A run directory as `srlib run --outcome` leaves it; status None = no outcome.json (killed)."""
    run_dir = _run_dir(root, sr, seed)
    run_dir.mkdir(parents=True)
    if status is not None:
        error = None if status == "FINISHED" else "NonFiniteLoss: loss term 'total' is nan at iteration 2"
        (run_dir / "outcome.json").write_text(json.dumps({"status": status, "error": error, "config_hash": "x"}))
    if status == "FINISHED":
        metrics = {
            "miou": miou, "pixel_accuracy": 0.9, "iou_per_class": [0.9, miou, None],
            "thin_part_iou": miou / 2, "body_iou": miou, "small_object_iou": None, "hallucination_rate": 0.05,
        }
        cost = {"params_test": 1000, "params_train": 1500 if sr != "baseline" else 1000, "macs_test": 10**6,
                "macs_train": 2 * 10**6, "flops_test": 2 * 10**6, "flops_train": 4 * 10**6,
                "step_time_s": 0.1, "peak_bytes": 2**20 * 300, "kind": "cpu_peak_rss"}
        (run_dir / "metrics.json").write_text(json.dumps({
            "status": "FINISHED", "config": _config(sr, seed), "git_commit": "abc1234", "device": "cpu",
            "threads": 1, "classes": ["background", "cat", "dog"], "metrics": metrics, "cost": cost,
        }))
    else:
        (run_dir / "run.yaml").write_text(json.dumps(_config(sr, seed)))
    if predictions:
        rng = np.random.default_rng(seed)
        masks = rng.integers(0, 3, (2, 8, 8))
        np.savez(run_dir / "predictions.npz", images=rng.integers(0, 255, (2, 8, 8, 3), dtype=np.uint8),
                 masks=masks, preds=np.where(rng.random((2, 8, 8)) < 0.8, masks, 0))
    return run_dir


@pytest.fixture
def bench(tmp_path):
    """baseline x 3 seeds, full SR x 3 seeds, +MEA: one finished, one FAILED, one killed (no outcome)."""
    for seed in BASE:
        make_run(tmp_path, "baseline", seed, BASE[seed], predictions=seed == 0)
        make_run(tmp_path, "mea+srf+srl", seed, FULL[seed], predictions=seed == 0)
    make_run(tmp_path, "mea", 0, 0.71)
    make_run(tmp_path, "mea", 1, status="FAILED")
    make_run(tmp_path, "mea", 2, status=None)
    return tmp_path


def test_mean_ci_matches_scipy_t_interval():
    values = list(BASE.values())
    mean, half, n = stats.mean_ci(values)
    low, high = scipy_stats.t.interval(0.95, 2, loc=np.mean(values), scale=scipy_stats.sem(values))
    assert n == 3 and mean == pytest.approx(0.72)
    assert half == pytest.approx((high - low) / 2) == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-6)
    assert math.isnan(stats.mean_ci([0.5])[1]) and stats.mean_ci([None, math.nan]) [2] == 0


def test_paired_difference_matches_paired_t_test():
    diff = stats.paired_difference(FULL, BASE)
    # t = mean(d) / (sd(d) / sqrt(3)) = 4 with 2 dof: two-sided p = 1 - t / sqrt(t^2 + 2)
    assert diff["n"] == 3 and diff["mean"] == pytest.approx(0.04 / 3)
    assert diff["p"] == pytest.approx(1 - 4 / math.sqrt(18), rel=1e-6)
    assert diff["p"] == pytest.approx(scipy_stats.ttest_rel(list(FULL.values()), list(BASE.values())).pvalue)
    only_shared = stats.paired_difference({0: 0.8, 5: 0.9}, BASE)
    assert only_shared["n"] == 1 and math.isnan(only_shared["p"])


def test_tables_hold_exactly_the_runs_and_show_failures(bench):
    written = tables.build_tables(str(bench / "runs/**/seed~*"), bench / "out", {"name": "syn"})
    assert sorted(p.name for p in written) == sorted(tables.TABLE_FILES)
    ablation = (bench / "out" / "ablation.md").read_text()
    assert "Runs: 9 (7 FINISHED, 1 FAILED, 1 MISSING)" in ablation
    rows = [line for line in ablation.splitlines() if line.startswith("| ")][1:]
    assert [row.split("|")[1].strip() for row in rows] == ["baseline", "+MEA", "+MEA+SR-F+SR-L"]
    mea_row, full_row = rows[1], rows[2]
    assert "FAILED 1/3" in mea_row and "MISSING 1/3" in mea_row and "71.0 ± n/a (n=1)" in mea_row
    half = 100 * stats.mean_ci(list(FULL.values()))[1]
    assert f"73.3 ± {half:.1f} (n=3)" in full_row
    assert "+1.3 ± " in full_row and "p=0.057" in full_row
    assert "NonFiniteLoss" in ablation  # the failed run is listed with its error
    assert "git commit abc1234" in ablation and "seeds 0, 1, 2" in ablation
    failure = (bench / "out" / "failure_modes.md").read_text()
    assert "1/3 finished" in failure and "thin-part IoU" in failure
    assert "| cat " in (bench / "out" / "per_class.md").read_text()


def test_cost_table_gives_ratios_to_the_baseline(bench, tmp_path):
    files = []
    for exit_type, sr, params in (("none", "baseline", 1000), ("light", "mea+srf+srl", 1500)):
        path = tmp_path / "cost" / "dataset~gen" / "preset~tiny" / f"exit~{exit_type}" / f"sr~{sr}.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"params_test": 1000, "params_train": params, "macs_test": 5 * 10**8,
                                    "macs_train": 5 * 10**8 if sr == "baseline" else 6 * 10**8,
                                    "step_time_s": 0.2 if sr == "baseline" else 0.3,
                                    "peak_memory_mib": 100.0 if sr == "baseline" else 150.0,
                                    "memory_kind": "cpu_peak_rss",
                                    "step_tensor_memory_mib": 40.0 if sr == "baseline" else 52.0}))
        files.append(path)
    tables.build_tables(str(bench / "runs/**/seed~*"), bench / "out", cost_files=files)
    cost = (bench / "out" / "cost.md").read_text()
    assert "1.5 k (×1.500)" in cost and "600 MMAC (×1.200)" in cost and "1.2 GFLOP (×1.200)" in cost
    assert "0.300 s (×1.500)" in cost and "150 MiB (×1.500)" in cost and "FLOPs = 2 × MACs" in cost
    assert "52 MiB (×1.300)" in cost and "step tensor memory: the peak of the tensors one training step" in cost


def test_finished_outcome_without_metrics_is_an_error_naming_the_file(bench):
    (_run_dir(bench, "baseline", 1) / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"sr~baseline/seed~1/metrics.json"):
        frames.collect_runs(str(bench / "runs/**/seed~*"))


def test_picture_grid_falls_back_to_a_note_without_predictions(bench, tmp_path):
    frame = frames.collect_runs(str(bench / "runs/**/seed~*"))
    assert figures._prediction_runs(frame, FULL_SR)[1] == 0
    for path in (bench / "runs").rglob("predictions.npz"):
        path.unlink()
    assert figures._prediction_runs(frame, FULL_SR) is None
    assert figures.plot_pictures(frame, tmp_path / "p.png").stat().st_size > 0


def test_cost_tables_are_split_by_pixel_loss_with_their_own_baselines():
    def record(pixel, sr, step):
        return {"dataset": "gen", "preset": "tiny", "pixel": pixel, "sr": sr,
                "exit": "none" if sr == "baseline" else "light",
                "params_test": 1000, "params_train": 1000, "step_time_s": step}

    records = [record("ce", "baseline", 0.1), record("ce", "mea+srf+srl", 0.2),
               record("lal", "baseline", 0.4), record("lal", "mea+srf+srl", 0.5)]
    sections = costs.cost_sections({"costs": records, "costs_from_runs": True})
    assert [s["title"] for s in sections] == ["gen · tiny · pixel loss ce", "gen · tiny · pixel loss lal"]
    assert list(sections[0]["frame"]["step time"]) == ["0.100 s (×1.000)", "0.200 s (×2.000)"]
    assert list(sections[1]["frame"]["step time"]) == ["0.400 s (×1.000)", "0.500 s (×1.250)"]
    records[1]["step_time_ratio"] = {"median": 1.159, "q1": 1.14, "q3": 1.184, "n": 10}  # interleaved rounds win
    [ce, _] = costs.cost_sections({"costs": records, "costs_from_runs": False})
    assert list(ce["frame"]["step time"]) == ["0.100 s (×1.000)", "0.200 s (×1.159, IQR 1.140–1.184)"]


def test_a_table_is_one_function_and_one_entry(bench, monkeypatch):
    def status_sections(data):
        import pandas as pd

        counts = data["runs"]["status"].value_counts().sort_index()
        return [{"title": "runs", "caption": "Runs per status.",
                 "frame": pd.DataFrame({"status": counts.index, "runs": counts.values})}]

    monkeypatch.setitem(tables.TABLES, "status.md", ("Status", status_sections))
    written = tables.build_tables(str(bench / "runs/**/seed~*"), bench / "out", {"name": "syn"})
    assert bench / "out" / "status.md" in written
    text = (bench / "out" / "status.md").read_text()
    assert text.startswith("# Status: syn") and "| FAILED   | 1      |" in text
    assert "<h2 id='status'>Status</h2>" in (bench / "out" / "tables.html").read_text()
    assert (bench / "out" / "status.html").exists()


def test_tables_html_shows_description_status_and_both_figures(bench):
    tables.build_tables(str(bench / "runs/**/seed~*"), bench / "out",
                        {"name": "syn", "description": "Synthetic check of the `tables` page."})
    page = (bench / "out" / "tables.html").read_text()
    assert "Synthetic check of the <code>tables</code> page." in page  # description, code spans rendered
    assert "Runs per cell" in page and "Failed runs" in page and "NonFiniteLoss" in page
    assert page.count("src='data:image/png;base64,") == 2  # ablation.png and pictures.png, embedded
    assert "<td class='num'>73.3 ±" in page  # numbers right-aligned
    assert "<br>(×1.000)</td>" in page  # ratios on their own line: the cost table fits the page
    for table in tables.TABLES:  # one page per table, for the Snakemake report
        assert "Synthetic check" in (bench / "out" / tables.page_name(table)).read_text()


def test_score_intervals_stay_within_0_and_100_percent():
    assert format.percent(0.027, 0.106) == "2.7 (0.0–13.3)"
    assert format.percent(0.99, 0.05) == "99.0 (94.0–100.0)"
    assert format.percent(0.38, 0.019) == "38.0 ± 1.9"
    assert format.percent(-0.276, 0.086, signed=True) == "-27.6 ± 8.6"  # differences are not clipped


@pytest.mark.parametrize("name", sorted(path.parent.name for path in (REPO / "results").glob("*/reference_runs")))
def test_committed_result_tables_rebuild_byte_for_byte_from_their_records(name, tmp_path):
    # What each results/<bench>/README.md promises: srlib tables over the committed run records and cost files
    # writes the committed .md and .html tables again, byte for byte (a caption changed in code fails here
    # until the committed tables are rebuilt).
    results = REPO / "results" / name
    cost = sorted(str(path) for path in (results / "cost").rglob("*.json"))
    subprocess.run([sys.executable, "-m", "srlib", "tables", str(results / "reference_runs" / "**" / "seed~*"),
                    "--out", str(tmp_path), "--benchmark", str(REPO / "benchmarks" / f"{name}.yaml"), "--cost", *cost],
                   check=True, capture_output=True, cwd=REPO)
    written = sorted(path.name for path in tmp_path.iterdir() if path.suffix in (".md", ".html"))
    assert written and all((tmp_path / name).read_bytes() == (results / name).read_bytes() for name in written), [
        name for name in written if (tmp_path / name).read_bytes() != (results / name).read_bytes()]
