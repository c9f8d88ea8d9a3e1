"""Benchmark scripts run end to end on tiny shapes and print the columns the README quotes (figures not asserted)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RATIO = r"\d+\.\d\d \[\d+\.\d\d-\d+\.\d\d\]"  # median [interquartile range]


@pytest.mark.parametrize("script", sorted(path.name for path in (REPO / "benchmarks" / "perf").glob("*.py")))
def test_every_benchmark_script_imports_and_prints_its_usage(script):
    result = subprocess.run([sys.executable, REPO / "benchmarks" / "perf" / script, "--help"], capture_output=True,
                            text=True)
    assert result.returncode == 0 and "usage:" in result.stdout, result.stderr


def test_lal_cost_times_each_loss_under_both_allocators_against_cross_entropy():
    command = [sys.executable, REPO / "benchmarks" / "perf" / "lal_cost.py", "--device", "cpu", "--size", "16",
               "--rounds", "2", "--labels", "voc", "--layout", "channels-first", "--threads", "1"]
    lines = subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()
    header = next(line for line in lines if line.startswith("loss"))
    assert re.search(r"system ms +time / ref +retain ms +time / ref +peak MiB +mem / ref", header)
    rows = {line.split()[0]: line for line in lines if line.startswith(("ce ", "lal "))}
    time_ratio = rf" +\d+\.\d\d +({RATIO})"  # milliseconds, then the ratio
    pattern = rf"channels-first{time_ratio}{time_ratio} +\d+\.\d +({RATIO})$"
    reference = re.search(pattern, rows["ce"])
    assert reference and reference.groups() == ("1.00 [1.00-1.00]",) * 3  # ce is its own reference
    assert re.search(pattern, rows["lal"])


def test_dag_timing_writes_the_bare_snakefile_and_the_sweeps_targets(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("dag_timing", REPO / "benchmarks" / "perf" / "dag_timing.py")
    dag_timing = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dag_timing)
    bench = dag_timing.sweep_file(seeds=1)
    dag_timing.write_bare(tmp_path / "bare", bench)
    targets = json.loads((tmp_path / "bare" / "targets.json").read_text())
    runs = 5 * len(bench["axes"]["preset"]) * 4 * 8  # dataset ids x presets x pixel losses x SR cells, one seed
    assert sum(t.endswith("/outcome.json") for t in targets) == runs
    assert "rule train:" in (tmp_path / "bare" / "Snakefile").read_text()
