"""Time `snakemake -n` on a generated benchmark of about 5,000 runs (target: <= 20 s).

    python benchmarks/dag_timing.py [--seeds 8] [--repeats 3]

Runs in a scratch copy of the workflow (nothing is written under results/). The benchmark is
5 dataset ids x 4 presets x 4 pixel losses x 8 SR combinations x seeds; it prints the number of jobs
and the wall time of each dry run.
"""

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PRESETS = ["deeplabv2_resnet101", "deeplabv3_resnet101", "deeplabv3_resnet18", "fcn_mobilenetv2_100"]


def benchmark(seeds: int) -> dict:
    datasets = [{"name": "generated", "id": f"generated{i}", "generate": {"size": 64}} for i in range(5)]
    return {
        "name": "dagtiming",
        "base": {"device": "cpu", "optim": {"iters": 10}},
        "axes": {"dataset": datasets, "preset": PRESETS, "pixel": ["ce", "focal", "lal", "ce+center"],
                 "sr": ["all"], "seed": list(range(seeds))},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=8, help="seeds per cell (8 -> 5,120 runs)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copy(REPO / "Snakefile", work)
        for name in ("workflow", "profiles"):
            shutil.copytree(REPO / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        (work / "bench.yaml").write_text(yaml.safe_dump(benchmark(args.seeds)))
        command = [sys.executable, "-m", "snakemake", "-n", "--configfile", "bench.yaml", "--quiet", "rules"]
        for repeat in range(args.repeats):
            start = time.perf_counter()
            result = subprocess.run(command, cwd=work, capture_output=True, text=True)
            elapsed = time.perf_counter() - start
            if result.returncode != 0:
                sys.exit(f"snakemake -n failed:\n{result.stdout}\n{result.stderr}")
            trains = int(re.search(r"^train\s+(\d+)$", result.stdout, re.M)[1])
            total = int(re.search(r"^total\s+(\d+)$", result.stdout, re.M)[1])
            print(f"run {repeat + 1}: {trains} runs, {total} jobs, snakemake -n took {elapsed:.1f} s", flush=True)


if __name__ == "__main__":
    main()
