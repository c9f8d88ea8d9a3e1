"""Tables of a settings sweep: a group of rows per setting in every table, shared runs shown under each setting
they serve, the exits table and the mechanism in the claims."""

import copy
import json

import pytest
from snakemake.utils import validate

from srlib.sweep import benchmark, cells
from srlib.report import tables
from test_sweep import READINGS, SCHEMA

BENCH = {**copy.deepcopy(READINGS), "name": "settings"}
BENCH["axes"]["settings"] = {"official": {"loss": {"variant": "official"}}, "paper": {"loss": {"variant": "paper"}}}
BENCH["axes"]["sr"] = ["baseline", "mea", "mea+srf"]
BENCH["axes"]["seed"] = [0, 1, 2]
BENCH["overrides"] = []


def _record(run: dict) -> dict:
    """A finished record whose scores depend on its cell, with exit scores where it has exits."""
    seed, sr = int(run["seed"]), run["sr"]
    shift = {"baseline": 0.0, "mea": 0.01, "mea+srf": -0.2 if run["setting"] == "official" else 0.02}[sr]
    metrics = {"miou": 0.4 + shift + 0.01 * seed + 0.003 * seed * seed * len(sr), "pixel_accuracy": 0.9,
               "iou_per_class": [0.9, 0.5, None], "thin_part_iou": 0.1, "hallucination_rate": 0.05}
    if sr != "baseline":
        metrics.update({"exit1_miou": 0.09, "exit2_miou": metrics["miou"], "teacher_agreement": 0.96,
                        "head_accuracy_teacher_wrong": 0.03})
    config = {"seed": seed, "data": {"name": "generated"}, "model": {"preset": run["preset"], "exit": "light"},
              "loss": {"variant": run["setting"], "tau": 1.0, "pixel": "ce", **cells.sr_flags(sr)}}
    return {"status": "FINISHED", "config": config, "metrics": metrics, "classes": ["bg", "a", "b"],
            "train": {"final_terms": {"srf_gap": 0.25} if "srf" in sr else {}}, "cost": {}}


@pytest.fixture
def settings_runs(tmp_path):
    bench = copy.deepcopy(BENCH)
    validate(bench, SCHEMA)
    sw = benchmark.expand(bench)
    for run, run_dir in zip(sw["runs"], sw["run_dirs"]):
        path = tmp_path / run_dir
        path.mkdir(parents=True)
        (path / "metrics.json").write_text(json.dumps(_record(run)))
    return bench, tmp_path / sw["dir"] / "runs"


def test_every_setting_has_its_rows_and_shares_the_runs_it_reads_alike(settings_runs, tmp_path):
    bench, runs = settings_runs
    assert len(list(runs.glob("**/metrics.json"))) == 3 * 5  # baseline once, +MEA and +MEA+SR-F per setting
    tables.build_tables(str(runs / "**" / "seed~*"), tmp_path / "out", bench)
    ablation = (tmp_path / "out" / "ablation.md").read_text()
    official, paper = ablation.split("## setting official · p1 · pixel loss ce")[1].split(
        "## setting paper · p1 · pixel loss ce")
    for section in (official, paper):
        assert "| baseline " in section and "(n=3)" in section  # the one baseline under both
    def baseline_cells(section):
        return [[cell.strip() for cell in line.split("|")] for line in section.splitlines()
                if line.startswith("| baseline")]

    assert baseline_cells(official) == baseline_cells(paper)
    claims = (tmp_path / "out" / "claims.md").read_text()
    assert claims.count("## setting ") == 2
    assert "Runs: 15 (15 FINISHED). Settings (" in claims and "official = loss.variant: official; paper" in claims
    assert "exit 1 (teacher) mIoU 9 % (+MEA 9 %); head = exit 1 on 96 % (+MEA 96 %)" in claims
    glance = (tmp_path / "out" / "settings.md").read_text()
    rows = [line for line in glance.splitlines() if line.startswith(("| official", "| paper"))]
    assert len(rows) == 2 and all("| +MEA+SR-F mIoU %" not in row for row in rows)
    assert "contradicted" in rows[0] and "| 96.0" in rows[0]  # official: -20 points; head = exit 1 on 96 %
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(tables.table_files(settings=True))
    exits = (tmp_path / "out" / "exits.md").read_text()
    assert "| exit 1 mIoU %" in exits and "| head mIoU %" in exits and "srf gap" in exits
    assert "| baseline" not in exits  # no exits, no row


def test_without_the_benchmark_each_run_shows_under_its_own_setting_only(settings_runs, tmp_path):
    _, runs = settings_runs
    tables.build_tables(str(runs / "**" / "seed~*"), tmp_path / "out")
    paper = (tmp_path / "out" / "ablation.md").read_text().split("## setting paper")[1]
    assert "| baseline " not in paper  # the shared baseline lives under official


def test_the_picture_grid_shows_the_baseline_once_and_full_sr_under_each_setting(settings_runs, tmp_path):
    import numpy as np

    from srlib.report import figures
    from srlib.report import frames

    bench, runs = settings_runs
    rng = np.random.default_rng(0)
    for run_dir in runs.glob("**/seed~0"):
        masks = rng.integers(0, 3, (2, 8, 8))
        np.savez(run_dir / "predictions.npz", images=rng.integers(0, 255, (2, 8, 8, 3), dtype=np.uint8), masks=masks,
                 preds=masks)
    served, settings = tables._served(bench)
    frame = frames.collect_runs(str(runs / "**" / "seed~*"), served, settings)
    _, seed, shown = figures._prediction_runs(frame, "mea+srf")
    assert seed == 0 and [(run["sr"], run["setting"]) for run in shown] == [
        ("baseline", "official"), ("mea+srf", "official"), ("mea+srf", "paper")]  # the shared baseline once
    assert figures.plot_pictures(frame, tmp_path / "pictures.png").exists()
