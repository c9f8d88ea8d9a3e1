"""Benchmark scripts run end to end on tiny shapes and print the columns the README quotes (figures not asserted)."""

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
