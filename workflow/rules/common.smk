"""Benchmark file -> validated settings, the list of runs and each run's config. Plain Python, no rules.

A run is identified by its directory, which spells its parameters:
    results/<bench>/runs/dataset~<id>/preset~<preset>/pixel~<loss>/sr~<combo>/seed~<seed>/
and its config is base <- dataset config <- matching overrides <- the axis values.
Everything here runs when Snakemake parses the workflow, for every invocation (and for every
cluster job), so it avoids heavy imports (no torch, pandas, scipy) and does O(runs) dict work only.
"""

import copy
import functools
import itertools
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import yaml
from snakemake.utils import validate

from srlib.config import DEFAULTS, load_schema
from srlib.tables import SR_ORDER, TABLE_FILES, canonical_sr


class BenchmarkError(ValueError):
    """The benchmark file is invalid; the message names the key."""


validate(config, "../schemas/config.schema.yaml")

SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's emitter when available (fast)
# Shell commands use these two directly, not via params: a params change would make Snakemake rerun every
# finished run when the virtual environment or the checkout moves.
PYTHON = sys.executable  # the interpreter running Snakemake, which has srlib installed
GPU_SLOT = str(Path(workflow.basedir) / "workflow" / "scripts" / "gpu_slot.py")
BENCH = config["name"]
BENCH_DIR = f"results/{BENCH}"
RUNS_DIR = f"{BENCH_DIR}/runs"
RUN_PATTERN = "dataset~{dataset}/preset~{preset}/pixel~{pixel}/sr~{sr}/seed~{seed}"
COST_PATTERN = "dataset~{dataset}/preset~{preset}/exit~{exit}/sr~{sr}"
GENERATED_PATTERN = "results/data/generated/size~{size}/train~{n_train}/val~{n_val}/test~{n_test}/seed~{seed}"
GENERATE_DEFAULTS = {"size": 64, "n_train": 2000, "n_val": 500, "n_test": 500, "seed": 0}

# Run-config keys that the axes or other benchmark keys set: a fragment may not set them.
OWNED_KEYS = {
    "seed": "axes.seed", "threads": "resources.train.threads", "tracking": "tracking",
    "data.name": "axes.dataset", "data.root": "axes.dataset[].root", "data.label_dir": "axes.dataset[].label_dir",
    "model.preset": "axes.preset", "loss.pixel": "axes.pixel",
    "loss.mea": "axes.sr", "loss.srf": "axes.sr", "loss.srl": "axes.sr",
}


# -- run-config fragments -----------------------------------------------------------------------------
def merge(base: dict, update: dict) -> dict:
    """Deep merge: nested dicts merge, everything else in ``update`` replaces."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _flat_keys(fragment: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in fragment.items():
        keys.append(prefix + key)
        if isinstance(value, dict):
            keys += _flat_keys(value, f"{prefix}{key}.")
    return keys


RUN_VALIDATOR = jsonschema.Draft202012Validator(load_schema())


def check_fragment(fragment: dict, where: str) -> None:
    """Reject unknown keys, wrong types and axis-owned keys in a run-config fragment, naming the key.

    Registry names (preset, dataset) are checked by ``srlib run`` itself (that needs torch).
    """
    for key in _flat_keys(fragment):
        if key in OWNED_KEYS:
            raise BenchmarkError(f"{where}.{key}: set by the benchmark's {OWNED_KEYS[key]}, not in a run-config fragment")
    for error in RUN_VALIDATOR.iter_errors(merge(DEFAULTS, fragment)):
        path = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "additionalProperties":
            unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            prefix = f"{where}.{path}." if path else f"{where}."
            names = ", ".join(f"'{prefix}{name}'" for name in unknown)
            raise BenchmarkError(f"unknown run-config key {names} (see srlib/config.py DEFAULTS)")
        raise BenchmarkError(f"'{where}.{path}': {error.message}")


# -- axes ---------------------------------------------------------------------------------------------
def expand_sr(items: list[str], where: str) -> list[str]:
    """['all'] -> the 2^3 grid; names made canonical (srl+mea -> mea+srl); table order."""
    names = set()
    for item in items:
        if item == "all":
            names.update(SR_ORDER)
            continue
        try:
            names.add(canonical_sr(item))
        except ValueError as error:
            raise BenchmarkError(f"{where}: {error}") from None
    return [name for name in SR_ORDER if name in names]


def generated_root(generate: dict) -> str:
    return GENERATED_PATTERN.format(**generate)


def dataset_entries() -> dict[str, dict]:
    """axes.dataset -> {id: {name, root, label_dir, config, generate}}; roots resolved, real roots checked."""
    entries = {}
    for i, item in enumerate(config["axes"]["dataset"]):
        where = f"axes.dataset[{i}]"
        entry = {"name": item} if isinstance(item, str) else dict(item)
        entry.setdefault("id", entry["name"])
        entry.setdefault("label_dir", None)
        entry["config"] = entry.get("config") or {}
        check_fragment(entry["config"], f"{where}.config")
        if entry["id"] in entries:
            raise BenchmarkError(f"{where}: dataset id {entry['id']!r} appears twice; give one entry an `id`")
        if entry["name"] == "generated" and "root" not in entry:
            entry["generate"] = {**GENERATE_DEFAULTS, **entry.get("generate", {})}
            entry["root"] = generated_root(entry["generate"])
        elif "generate" in entry:
            raise BenchmarkError(f"{where}.generate: only for the generated dataset without an explicit root")
        else:
            if "root" not in entry:
                if not config["datasets_root"]:
                    raise BenchmarkError(
                        f"{where}: dataset {entry['name']!r} needs a root: give --config datasets_root=DIR "
                        f"(read as DIR/{entry['name']}) or a `root` in its entry"
                    )
                entry["root"] = str(Path(config["datasets_root"]) / entry["name"])
            if not Path(entry["root"]).is_dir():
                raise BenchmarkError(f"{where}: dataset {entry['name']!r} root {entry['root']!r} is not a directory")
        entries[entry["id"]] = entry
    return entries


def run_overrides() -> list[dict]:
    """overrides[] with `where` values as sets of strings (canonical SR names), each checked against its axis."""
    rules = []
    for i, item in enumerate(config["overrides"]):
        check_fragment(item["config"], f"overrides[{i}].config")
        where = {}
        for axis, values in item["where"].items():
            values = values if isinstance(values, list) else [values]
            if axis == "sr":
                values = expand_sr(values, f"overrides[{i}].where.sr")
            where[axis] = {str(v) for v in values}
            unknown = where[axis] - set(AXES[axis])
            if unknown:
                raise BenchmarkError(
                    f"overrides[{i}].where.{axis}: {sorted(unknown)} not on the axis; valid: {', '.join(AXES[axis])}"
                )
        rules.append({"where": where, "config": item["config"]})
    return rules


check_fragment(config["base"], "base")
DATASETS = dataset_entries()
AXES = {
    "dataset": list(DATASETS),
    "preset": list(dict.fromkeys(config["axes"]["preset"])),
    "pixel": list(dict.fromkeys(config["axes"]["pixel"])),
    "sr": expand_sr(config["axes"]["sr"], "axes.sr"),
    "seed": [str(s) for s in dict.fromkeys(config["axes"]["seed"])],
}
OVERRIDES = run_overrides()
RESOURCES = config["resources"]  # {"train": {threads, gpu, mem_mb, runtime}, "cost": {...}}, schema defaults filled
TRACKING = {
    "enabled": config["tracking"]["enabled"],
    "uri": config["tracking"]["uri"] or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///results/mlflow.db",
    "experiment": config["tracking"]["experiment"] or BENCH,
}
COST_EXITS = config["cost"]["exits"] or [config["base"].get("model", {}).get("exit", DEFAULTS["model"]["exit"])]
COST_SR = expand_sr(config["cost"]["sr"], "cost.sr") if config["cost"]["sr"] else AXES["sr"]

# Every run, as its wildcard dict, in a stable order (the Cartesian product of the axes).
RUNS = [dict(zip(AXES, values)) for values in itertools.product(*AXES.values())]
RUN_DIRS = [f"{RUNS_DIR}/{RUN_PATTERN.format(**run)}" for run in RUNS]
COSTS = [
    {"dataset": d, "preset": p, "exit": "none" if sr == "baseline" else e, "sr": sr}
    for d, p, e, sr in itertools.product(AXES["dataset"], AXES["preset"], COST_EXITS, COST_SR)
]
COST_FILES = list(dict.fromkeys(f"{BENCH_DIR}/cost/{COST_PATTERN.format(**c)}.json" for c in COSTS))


# -- per-run config (called from params / input functions with the job's wildcards) ------------------
_group_cache = {}


def _group_config(dataset: str, preset: str, pixel: str, sr: str, seed: str) -> dict:
    """base <- dataset config <- matching overrides; cached per distinct set of matching overrides."""
    run = {"dataset": dataset, "preset": preset, "pixel": pixel, "sr": sr, "seed": seed}
    matching = tuple(
        i for i, rule in enumerate(OVERRIDES) if all(run[axis] in values for axis, values in rule["where"].items())
    )
    key = (dataset, matching)
    if key not in _group_cache:
        cfg = merge(config["base"], DATASETS[dataset]["config"])
        for i in matching:
            cfg = merge(cfg, OVERRIDES[i]["config"])
        _group_cache[key] = cfg
    return _group_cache[key]


def run_config(w) -> dict:
    """The run-config fragment of one run (``srlib run`` adds the defaults and validates it)."""
    entry = DATASETS[w.dataset]
    flags = set(w.sr.split("+"))
    fixed = {
        "seed": int(w.seed),
        "threads": RESOURCES["train"]["threads"],
        "data": {"name": entry["name"], "root": entry["root"], "label_dir": entry["label_dir"]},
        "model": {"preset": w.preset},
        "loss": {"pixel": w.pixel, "mea": "mea" in flags, "srf": "srf" in flags, "srl": "srl" in flags},
        "tracking": dict(TRACKING),
    }
    return merge(_group_config(w.dataset, w.preset, w.pixel, w.sr, w.seed), fixed)


def cost_config(w) -> dict:
    """Config measured by the cost rule: the first pixel loss and seed of the sweep, tracking off."""
    run = SimpleNamespace(dataset=w.dataset, preset=w.preset, pixel=AXES["pixel"][0], sr=w.sr, seed=AXES["seed"][0])
    cfg = run_config(run)
    cfg["tracking"]["enabled"] = False
    if w.exit != "none":
        cfg["model"]["exit"] = w.exit
    return cfg


def as_yaml(cfg: dict) -> str:
    return yaml.dump(cfg, Dumper=SAFE_DUMPER, sort_keys=False)


@functools.lru_cache(maxsize=None)
def _run_yaml(dataset: str, preset: str, pixel: str, sr: str, seed: str) -> str:
    return as_yaml(run_config(SimpleNamespace(dataset=dataset, preset=preset, pixel=pixel, sr=sr, seed=seed)))


def run_config_yaml(w) -> str:
    """run.yaml of one run; cached because Snakemake evaluates params more than once per job."""
    return _run_yaml(w.dataset, w.preset, w.pixel, w.sr, w.seed)


def dataset_input(w):
    """The generated dataset's directory (made by generate_data) or nothing for a real dataset."""
    entry = DATASETS[w.dataset]
    return [ancient(entry["root"])] if "generate" in entry else []


def tracking_input(w):
    return [ancient(f"{BENCH_DIR}/mlflow_experiment.txt")] if TRACKING["enabled"] else []


wildcard_constraints:
    dataset="[A-Za-z0-9_.-]+",
    preset="[A-Za-z0-9_.-]+",
    pixel="[a-z+]+",
    sr="baseline|[a-z+]+",
    seed="[0-9]+",
    exit="[a-z]+",
