"""A benchmark file (``benchmarks/<name>.yaml``) checked and expanded into its sweep: dataset entries, the
supervision and settings axes, overrides, the runs to train, the cost jobs, and which settings each serves.

``check_benchmark_file`` and ``check_configfiles`` name a benchmark file's YAML error where Snakemake would not;
``check_fragment`` checks a run-config fragment against the run schema; ``expand`` returns the whole sweep.
"""

import itertools
import json
import re
import sys
from pathlib import Path

from srlib.config import (
    DEFAULTS, REGULARIZERS, SUPERVISIONS, ConfigError, check_schema, integral_floats_to_ints, merge, tracking_uri,
)
from srlib.data import DATASETS, GENERATE_DEFAULTS
from srlib.files import read_yaml
from srlib.identity import reading_hash
from srlib.sweep.cells import SR_ORDER, canonical_sr, cell_key, cost_pattern, run_pattern
from srlib.sweep.run_configs import cost_config, run_config

GENERATED_PATTERN = "results/data/generated/size~{size}/train~{n_train}/val~{n_val}/test~{n_test}/seed~{seed}"
GENERATED_KEYS = ("size", "n_train", "n_val", "n_test", "seed")  # the generator parameters a sweep may set

# Run-config keys that the axes or other benchmark keys set: a fragment may not set them.
OWNED_KEYS = {
    "seed": "axes.seed", "threads": "resources.train.threads", "tracking": "tracking",
    "data.name": "axes.dataset", "data.root": "axes.dataset[].root", "data.label_dir": "axes.dataset[].label_dir",
    "model.preset": "axes.preset", "loss.pixel": "axes.pixel", "loss.center": "axes.pixel",
    "loss.mea": "axes.sr", "loss.srf": "axes.sr", "loss.srl": "axes.sr",
    "data.supervision": "axes.supervision", "loss.regularizer": "axes.supervision",
}
SETTING_NAME = "^[A-Za-z0-9_.=-]+$"  # a setting's name: a path segment, an MLflow tag
SUPERVISION_SEP = "@"  # dataset id @ supervision value


class BenchmarkError(ConfigError):
    """The benchmark file is invalid; the message names the key."""


# -- benchmark files --------------------------------------------------------------------------------
def check_benchmark_file(path: str | Path) -> None:
    """BenchmarkError naming ``path`` (and the line and column of a YAML syntax error) when Snakemake would refuse
    it as a config file: it reads JSON, else YAML, into a mapping, and says neither where nor what is wrong."""
    text = Path(path).read_text()
    try:
        json.loads(text)
    except ValueError:
        try:
            read_yaml(path)
        except ValueError as error:
            raise BenchmarkError(f"benchmark file {error}") from None


def configfile_args(argv: list[str]) -> list[str]:
    """The paths given to Snakemake's ``--configfile`` / ``--configfiles`` (each takes one or more) in ``argv``."""
    paths, taking = [], False
    for arg in argv:
        name, equals, value = arg.partition("=")
        if name in ("--configfile", "--configfiles"):
            paths += [value] if equals else []
            taking = not equals
        elif taking and not arg.startswith("-"):
            paths.append(arg)
        else:
            taking = False
    return paths


def check_configfiles(argv: list[str]) -> None:
    """Exit with one line naming the file, line and column when a ``--configfile`` in Snakemake's ``argv`` is not
    valid YAML (``check_benchmark_file``). Snakemake reads those files before the Snakefile and then only says
    'Config file is not valid JSON or YAML'; the workflow profiles (``profiles/*/config.yaml``) call this while
    Snakemake reads them, before. A missing or unreadable file is left to Snakemake's own message."""
    for path in configfile_args(argv):
        try:
            check_benchmark_file(path)
        except (OSError, UnicodeDecodeError):
            continue
        except BenchmarkError as error:
            sys.exit(f"snakemake: error: {error}")


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


# -- run-config fragments -----------------------------------------------------------------------------
def _flat_keys(fragment: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in fragment.items():
        keys.append(prefix + key)
        if isinstance(value, dict):
            keys += _flat_keys(value, f"{prefix}{key}.")
    return keys


def check_fragment(fragment: dict, where: str) -> None:
    """Reject unknown keys, wrong types and axis-owned keys in a run-config fragment, naming the key.

    Registry names (preset, dataset, pixel loss, ...) are checked by ``srlib run`` itself (that needs torch).
    """
    for key in _flat_keys(fragment):
        if key in OWNED_KEYS:
            raise BenchmarkError(f"{where}.{key}: set by the benchmark's {OWNED_KEYS[key]}, "
                                 "not in a run-config fragment")
    merged = merge(DEFAULTS, fragment)
    integral_floats_to_ints(fragment, document=merged)  # the fragment itself goes into the runs' configs
    try:
        check_schema(merged, "benchmark file", prefix=f"{where}.")
    except ConfigError as error:
        raise BenchmarkError(f"{error} (see srlib/config.py DEFAULTS)") from None


# -- a benchmark file expanded ------------------------------------------------------------------------
def generated_root(generate: dict) -> str:
    """The generated dataset's directory, which spells its parameters."""
    return GENERATED_PATTERN.format(**generate)


def dataset_entries(bench: dict) -> dict[str, dict]:
    """axes.dataset -> {id: {name, root, label_dir, config, generate}}; roots resolved, real roots checked."""
    entries = {}
    for i, item in enumerate(bench["axes"]["dataset"]):
        where = f"axes.dataset[{i}]"
        entry = {"name": item} if isinstance(item, str) else dict(item)
        entry.setdefault("id", entry["name"])
        entry.setdefault("label_dir", None)
        entry["config"] = entry.get("config") or {}
        check_fragment(entry["config"], f"{where}.config")
        if entry["name"] not in DATASETS:
            raise BenchmarkError(f"{where}: unknown dataset {entry['name']!r}; valid: {', '.join(sorted(DATASETS))}")
        if entry["id"] in entries:
            raise BenchmarkError(f"{where}: dataset id {entry['id']!r} appears twice; give one entry an `id`")
        if entry["name"] == "generated" and "root" not in entry:
            entry["generate"] = {**{k: GENERATE_DEFAULTS[k] for k in GENERATED_KEYS}, **entry.get("generate", {})}
            entry["root"] = generated_root(entry["generate"])
        elif "generate" in entry:
            raise BenchmarkError(f"{where}.generate: only for the generated dataset without an explicit root")
        else:
            if "root" not in entry:
                if not bench.get("datasets_root"):
                    raise BenchmarkError(
                        f"{where}: dataset {entry['name']!r} needs a root: give --config datasets_root=DIR "
                        f"(read as DIR/{entry['name']}) or a `root` in its entry"
                    )
                entry["root"] = str(Path(bench["datasets_root"]) / entry["name"])
            if not Path(entry["root"]).is_dir():
                raise BenchmarkError(f"{where}: dataset {entry['name']!r} root {entry['root']!r} is not a directory")
        entries[entry["id"]] = entry
    return entries


def supervision_flags(value: str, where: str) -> dict:
    """Supervision axis value -> {"supervision", "regularizer"}: 'scribble+densecrf' -> scribble, densecrf."""
    labels, _, regularizer = value.partition("+")
    if labels not in SUPERVISIONS or (regularizer and regularizer not in REGULARIZERS):
        raise BenchmarkError(f"{where}: unknown supervision {value!r}; use one of {', '.join(SUPERVISIONS)}, "
                             f"optionally with +{' or +'.join(REGULARIZERS)}")
    return {"supervision": labels, "regularizer": regularizer or None}


def cross_supervision(entries: dict[str, dict], values: list[str]) -> dict[str, dict]:
    """Dataset entries x supervision values -> entries ``<id>@<value>`` with "supervision" and "regularizer"
    set and, for weak labels of a real dataset, "label_dir" from the entry's ``pseudo_dir`` / ``scribble_dir``."""
    crossed = {}
    for i, (dataset_id, entry) in enumerate(entries.items()):
        for value in values:
            flags = supervision_flags(value, "axes.supervision")
            item = {**entry, **flags, "id": f"{dataset_id}{SUPERVISION_SEP}{value}"}
            labels = flags["supervision"]
            if labels != "full" and "generate" not in entry:
                if not entry.get(f"{labels}_dir"):
                    raise BenchmarkError(f"axes.dataset[{i}]: supervision {value!r} on dataset {entry['name']!r} "
                                         f"needs `{labels}_dir` (a directory of {labels} label PNGs) in its entry")
                item["label_dir"] = entry[f"{labels}_dir"]
            crossed[item["id"]] = item
    return crossed


def run_overrides(bench: dict, axes: dict[str, list[str]]) -> list[dict]:
    """overrides[] with `where` values as sets of strings (canonical SR names), each checked against its axis."""
    rules = []
    for i, item in enumerate(bench.get("overrides") or []):
        check_fragment(item["config"], f"overrides[{i}].config")
        where = {}
        for axis, values in item["where"].items():
            values = values if isinstance(values, list) else [values]
            if axis == "sr":
                values = expand_sr(values, f"overrides[{i}].where.sr")
            where[axis] = {str(v) for v in values}
            unknown = where[axis] - set(axes[axis])
            if unknown:
                raise BenchmarkError(
                    f"overrides[{i}].where.{axis}: {sorted(unknown)} not on the axis; valid: {', '.join(axes[axis])}"
                )
        rules.append({"where": where, "config": item["config"]})
    return rules


def setting_fragments(bench: dict) -> dict[str, dict]:
    """axes.settings -> {name: run-config fragment}, each checked like any fragment ({} without the axis)."""
    settings = bench["axes"].get("settings") or {}
    for name, fragment in settings.items():
        if not re.match(SETTING_NAME, str(name)):
            raise BenchmarkError(f"axes.settings: name {name!r} must match {SETTING_NAME} (it is a path segment)")
        check_fragment(fragment or {}, f"axes.settings.{name}")
    return {str(name): fragment or {} for name, fragment in settings.items()}


def expand(bench: dict) -> dict:
    """A benchmark file (schema defaults filled) -> the sweep, validated; BenchmarkError names a bad key.

    Returns {"name", "dir", "datasets" (see dataset_entries), "settings" ({name: fragment}), "axes" ({axis:
    [value as str]}, "setting" only with axes.settings), "overrides", "resources", "tracking" ({enabled, uri,
    experiment}), "runs" (one {axis: value} per run to train, in product order), "run_dirs", "costs" (one
    {dataset, preset, pixel, [setting,] exit, sr} per cost job), "cost_files", "served" ({cell_key of a run or
    cost job: the settings it serves}; {} without settings)}.
    """
    check_fragment(bench.get("base") or {}, "base")
    datasets = dataset_entries(bench)
    axes_cfg = bench["axes"]
    if axes_cfg.get("supervision"):
        datasets = cross_supervision(datasets, list(dict.fromkeys(axes_cfg["supervision"])))
    settings = setting_fragments(bench)
    axes = {
        "dataset": list(datasets),
        "preset": list(dict.fromkeys(axes_cfg["preset"])),
        "pixel": list(dict.fromkeys(axes_cfg.get("pixel") or ["ce"])),
        **({"setting": list(settings)} if settings else {}),
        "sr": expand_sr(axes_cfg.get("sr") or ["all"], "axes.sr"),
        "seed": [str(s) for s in dict.fromkeys(axes_cfg.get("seed") or [0, 1, 2])],
    }
    bench_dir = f"results/{bench['name']}"
    tracking = bench.get("tracking") or {}
    sweep = {
        "name": bench["name"],
        "dir": bench_dir,
        "base": bench.get("base") or {},
        "datasets": datasets,
        "settings": settings,
        "axes": axes,
        "resources": {"train": {"threads": 1}, **(bench.get("resources") or {})},
        "tracking": {
            "enabled": tracking.get("enabled", True),
            # relative to the workflow directory: the URI is part of every run.yaml, which must not change
            # when the checkout moves
            "uri": tracking_uri(tracking.get("uri"), absolute=False),
            "experiment": tracking.get("experiment") or bench["name"],
        },
    }
    sweep["overrides"] = run_overrides(bench, axes)
    cells = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    served = shared_cells(cells, lambda cell: run_config(sweep, cell)) if settings else {}
    runs = [cell for cell in cells if cell_key(cell) in served] if settings else cells
    costs = shared_costs(sweep, bench.get("cost") or {})
    served.update(costs["served"])
    sweep.update({
        "runs": runs,
        "run_dirs": [f"{bench_dir}/runs/{run_pattern(axes).format(**run)}" for run in runs],
        "costs": costs["costs"],
        "cost_files": [f"{bench_dir}/cost/{cost_pattern(axes).format(**c)}.json" for c in costs["costs"]],
        "served": served,
    })
    return sweep


def shared_cells(cells: list[dict], config) -> dict[tuple, list[str]]:
    """Cells of a settings sweep that compute the same thing, trained once: {cell_key of the first cell of each
    group (in the order given): the settings its group covers}. Two cells are one group when they differ in
    their setting only and ``config(cell)`` (a run-config fragment) reads the same (``reading_hash``)."""
    groups: dict[tuple, tuple] = {}
    served: dict[tuple, list[str]] = {}
    for cell in cells:
        others = tuple((axis, str(value)) for axis, value in cell.items() if axis != "setting")
        group = (others, reading_hash(merge(DEFAULTS, config(cell))))
        home = groups.setdefault(group, cell_key(cell))
        served.setdefault(home, []).append(cell["setting"])
    return served


def shared_costs(sweep: dict, cost: dict) -> dict:
    """The cost jobs ({"costs": [{dataset, preset, pixel, [setting,] exit, sr}], "served": see shared_cells}):
    every dataset x preset x pixel loss [x setting] x exit type (``cost.exits``, else the runs' own) x SR
    combination of ``cost`` (benchmark key), the baseline without exits; in a settings sweep a job is shared by
    the settings whose cost config reads the same."""
    axes = sweep["axes"]
    cost_sr = expand_sr(cost["sr"], "cost.sr") if cost.get("sr") else axes["sr"]
    names = [axis for axis in ("dataset", "preset", "pixel", "setting") if axis in axes]
    costs = []
    for *values, exit_type, sr in itertools.product(*(axes[n] for n in names), cost.get("exits") or [None], cost_sr):
        cell = {**dict(zip(names, values)), "sr": sr}
        if exit_type is None:  # the exit its runs train with
            model = run_config(sweep, {**cell, "seed": axes["seed"][0]})["model"]
            exit_type = model.get("exit", DEFAULTS["model"]["exit"])
        costs.append({**cell, "exit": "none" if sr == "baseline" else exit_type})
    costs = list({cell_key(c): c for c in costs}.values())  # the baseline once, whatever the exits
    if "setting" not in axes:
        return {"costs": costs, "served": {}}
    served = shared_cells(costs, lambda c: cost_config(sweep, c))
    return {"costs": [c for c in costs if cell_key(c) in served], "served": served}
