"""Glue between Snakemake and srlib.sweep: the benchmark file validated and expanded, input and params functions.

What a sweep is (axes, run paths, each run's config) lives in srlib/sweep/; this file only hands Snakemake
the names its rules use. It runs when Snakemake parses the workflow, for every invocation (and every cluster
job), so it imports no torch, pandas or scipy.
"""

import functools
import sys
from pathlib import Path
from types import SimpleNamespace

import yaml
from snakemake.utils import validate

from srlib.sweep import benchmark, cells, run_configs
from srlib.config import SR_NAME, StrictValidator, check_schema
from srlib.identity import config_hash
from srlib.report.tables import table_files

# The benchmark file is checked first with messages that name the bad key (Snakemake's own message dumps
# the whole schema); validate() then fills the schema's defaults.
with open(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml") as _schema:
    check_schema(config, "benchmark file", validator=StrictValidator(yaml.safe_load(_schema)))  # seed 1.0 -> 1
validate(config, "../schemas/config.schema.yaml")

def _expand(bench: dict) -> dict:
    """benchmark.expand, its BenchmarkError prefixed with the benchmark file's path."""
    try:
        return benchmark.expand(bench)
    except benchmark.BenchmarkError as error:
        source = ", ".join(map(str, workflow.overwrite_configfiles or ["benchmarks/default.yaml"]))
        raise benchmark.BenchmarkError(f"{source}: {error}") from None


SWEEP = _expand(config)
TABLE_FILES = table_files(settings=bool(SWEEP["settings"]))  # the tables rule's outputs
SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's emitter when available (fast)
# Shell commands use these two directly, not via params: a params change would make Snakemake rerun every
# finished run when the virtual environment or the checkout moves.
PYTHON = sys.executable  # the interpreter running Snakemake, which has srlib installed
GPU_SLOT = str(Path(workflow.basedir) / "workflow" / "scripts" / "gpu_slot.py")
BENCH_DIR = SWEEP["dir"]
RUNS_DIR = f"{BENCH_DIR}/runs"
RUN_PATTERN = cells.run_pattern(SWEEP["axes"])  # setting~{setting} only in a benchmark with axes.settings
COST_PATTERN = cells.cost_pattern(SWEEP["axes"])
GENERATED_PATTERN = benchmark.GENERATED_PATTERN
RESOURCES = SWEEP["resources"]  # {"train": {threads, gpu, mem_mb, runtime}, "cost": {...}}, schema defaults filled
TRACKING = SWEEP["tracking"]
RUN_DIRS = SWEEP["run_dirs"]
COST_FILES = SWEEP["cost_files"]


def as_yaml(cfg: dict) -> str:
    return yaml.dump(cfg, Dumper=SAFE_DUMPER, sort_keys=False)


@functools.lru_cache(maxsize=None)
def _group_config(dataset: str, matching: tuple, setting: str) -> dict:
    return run_configs.group_config(SWEEP, dataset, matching, setting)


@functools.lru_cache(maxsize=None)
def _run_config(values: tuple) -> dict:
    run = dict(zip(SWEEP["axes"], values))
    group = _group_config(run["dataset"], run_configs.matching_overrides(SWEEP, run), run.get("setting", ""))
    return run_configs.run_config(SWEEP, run, group)


def _wildcard_run_config(w) -> dict:
    return _run_config(tuple(getattr(w, axis) for axis in SWEEP["axes"]))


def run_config_yaml(w) -> str:
    """run.yaml of one run (its config fragment)."""
    return as_yaml(_wildcard_run_config(w))


def run_identity(w) -> str:
    """The config hash of a run's fragment: what its result depends on, without logging cadence, paths or
    tracking. The train rule's only config param, so editing a display-only key never reruns a finished run."""
    return config_hash(_wildcard_run_config(w))


def _cost_config(w) -> dict:
    names = [axis for axis in SWEEP["axes"] if axis != "seed"]
    return run_configs.cost_config(SWEEP, {**{axis: getattr(w, axis) for axis in names}, "exit": w.exit})


def cost_config_yaml(w) -> str:
    return as_yaml(_cost_config(w))


def cost_identity(w) -> str:
    """What a cost measurement depends on: its fragment's config hash and the number of timed steps (the
    cost rule's only config param, so logging and tracking keys never rerun it)."""
    fragment = _cost_config(w)
    return f"{config_hash(fragment)} steps {fragment.get('run', {}).get('cost_steps', 'default')}"


def dataset_input(w):
    """The generated dataset's directory (made by generate_data) or nothing for a real dataset."""
    entry = SWEEP["datasets"][w.dataset]
    return [ancient(entry["root"])] if "generate" in entry else []


# Inputs that no wildcard changes are plain lists: Snakemake calls an input function, and inspects its
# signature, for every job it builds (in a dry run of 5,120 runs, ~20 % of the time). DATASET_INPUT is a list
# when every dataset id reads the same generated dataset, or none does (real datasets only).
TRACKING_MARKER = f"{BENCH_DIR}/mlflow_experiment.txt"  # init_tracking's ids; jobs read it ($SRLIB_TRACKING_MARKER)
TRACKING_INPUT = [ancient(TRACKING_MARKER)] if TRACKING["enabled"] else []
_DATASET_INPUTS = {tuple(dataset_input(SimpleNamespace(dataset=d))) for d in SWEEP["datasets"]}
DATASET_INPUT = list(next(iter(_DATASET_INPUTS))) if len(_DATASET_INPUTS) == 1 else dataset_input


wildcard_constraints:
    dataset="[A-Za-z0-9_.@+-]+",  # @<supervision> under axes.supervision (srlib/sweep/benchmark.py)
    preset="[A-Za-z0-9_.-]+",
    pixel="[A-Za-z0-9_.+-]+",
    sr=f"baseline|{SR_NAME}",
    seed="[0-9]+",
    exit="[a-z]+",
    setting=benchmark.SETTING_NAME.strip("^$"),  # axes.settings names
