"""Time `snakemake -n` on a generated benchmark of 5,120 runs against a bare Snakefile with the same jobs.

    python benchmarks/perf/dag_timing.py [--seeds 8] [--rounds 5]

Runs in a scratch copy of the workflow (nothing is written under results/). The benchmark is 5 dataset ids x
4 presets x 4 pixel losses x 8 SR combinations x seeds. The bare Snakefile has the same train and cost
output paths (wildcards alike), one lambda param per rule, a `touch` shell command and one rule gathering
them all: what Snakemake itself costs for that many jobs. The two dry runs alternate (ours, bare, bare,
ours, ...) so machine load hits both; printed: each one's median wall time and the median and interquartile
range of the per-round ratios (target <= 1.5).

The SLURM executor plugin runs `scontrol show config` whenever Snakemake starts (up to 10 s where a SLURM
client is installed but no controller answers, which is not the DAG's cost): both sides run with a stub
`scontrol` that fails at once.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from snakemake.utils import validate

from srlib.sweep import benchmark, cells
from srlib.cost import ratio_spread
from srlib.report.format import console_spread

REPO = Path(__file__).resolve().parents[2]
PRESETS = ["deeplabv2_resnet101", "deeplabv3_resnet101", "deeplabv3_resnet18", "fcn_mobilenetv2_100"]
TARGET = 1.5
BARE_SNAKEFILE = '''
import json

TARGETS = json.load(open("targets.json"))


rule all:
    input:
        TARGETS,


rule train:
    output:
        "{RUN}/outcome.json",
    params:
        seed=lambda w: w.seed,
    shell:
        "touch {{output}}"


rule cost:
    output:
        "{COST}.json",
    params:
        sr=lambda w: w.sr,
    shell:
        "touch {{output}}"
'''


def sweep_file(seeds: int) -> dict:
    datasets = [{"name": "generated", "id": f"generated{i}", "generate": {"size": 64}} for i in range(5)]
    return {
        "name": "dagtiming",
        "base": {"device": "cpu", "optim": {"iters": 10}},
        "axes": {"dataset": datasets, "preset": PRESETS, "pixel": ["ce", "focal", "lal", "ce+center"],
                 "sr": ["all"], "seed": list(range(seeds))},
    }


def write_bare(directory: Path, bench: dict) -> None:
    """The bare Snakefile and its targets (the sweep's outcome and cost files) in ``directory``."""
    filled = json.loads(json.dumps(bench))
    validate(filled, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))  # the schema's defaults
    expanded = benchmark.expand(filled)
    runs = f"{expanded['dir']}/runs/{cells.run_pattern(expanded['axes'])}"
    costs = f"{expanded['dir']}/cost/{cells.cost_pattern(expanded['axes'])}"
    directory.mkdir()
    (directory / "Snakefile").write_text(BARE_SNAKEFILE.format(RUN=runs, COST=costs))
    targets = [f"{d}/outcome.json" for d in expanded["run_dirs"]] + expanded["cost_files"]
    (directory / "targets.json").write_text(json.dumps(targets))


def dry_run(command: list[str], cwd: Path, env: dict) -> tuple[float, int]:
    """(wall seconds, jobs) of one `snakemake -n`."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"snakemake -n in {cwd} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed, int(re.search(r"^total\s+(\d+)$", result.stdout, re.M)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=8, help="seeds per cell (8 -> 5,120 runs)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (one dry run of each per round)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "ours"
        work.mkdir()
        shutil.copy(REPO / "Snakefile", work)
        for name in ("workflow", "profiles"):
            shutil.copytree(REPO / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        bench = sweep_file(args.seeds)
        (work / "bench.yaml").write_text(yaml.safe_dump(bench))
        write_bare(Path(tmp) / "bare", bench)
        stub = Path(tmp) / "bin"
        stub.mkdir()
        (stub / "scontrol").write_text("#!/bin/sh\nexit 1\n")
        (stub / "scontrol").chmod(0o755)
        env = {**os.environ, "PATH": f"{stub}:{os.environ.get('PATH', '')}"}
        snakemake = [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--cores", "1"]
        sides = {"ours": (snakemake + ["--configfile", "bench.yaml"], work),
                 "bare": (snakemake, Path(tmp) / "bare")}
        times = {name: [] for name in sides}
        for round_ in range(args.rounds):
            order = list(sides) if round_ % 2 == 0 else list(sides)[::-1]
            for name in order:
                elapsed, jobs = dry_run(*sides[name], env)
                times[name].append(elapsed)
                print(f"round {round_ + 1}: {name} {jobs} jobs, snakemake -n {elapsed:.2f} s", flush=True)
    spread = ratio_spread(times["ours"], times["bare"])
    print(f"snakemake -n median: ours {statistics.median(times['ours']):.2f} s, "
          f"bare {statistics.median(times['bare']):.2f} s")
    verdict = "meets" if spread["median"] <= TARGET else "MISSES"
    print(f"ours / bare: {console_spread(spread, 2)}: {verdict} the {TARGET}x target")


if __name__ == "__main__":
    main()
