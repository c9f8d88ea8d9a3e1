"""Many run directories as one pandas frame, one row per run, and the helpers every table and figure groups it with.

pandas is imported inside the functions that use it: the workflow imports the report's modules when Snakemake
parses it (``srlib.report.tables.TABLE_FILES``).
"""

import glob
from pathlib import Path

from srlib.rundir.record import load_run
from srlib.sweep.cells import AXES, cell_key, sr_rank


def expand_runs(runs) -> list[Path]:
    """Run directories from a list of directories and/or glob patterns (a pattern may match none)."""
    if isinstance(runs, (str, Path)):
        runs = [runs]
    dirs = []
    for item in runs:
        item = str(item)
        matches = sorted(glob.glob(item, recursive=True)) if glob.has_magic(item) else [item]
        dirs += [Path(m) for m in matches]
    return dirs


def collect_runs(runs, served: dict | None = None, settings=()):
    """pandas DataFrame, one row per run (columns: run_dir, AXES, status, error, config, result); with
    ``served`` (``srlib.sweep.benchmark.expand``'s), one row per setting a run serves (``serve_settings``), the
    settings in ``settings``' order (``order_settings``)."""
    import pandas as pd

    records = serve_settings([load_run(d) for d in expand_runs(runs)], served or {})
    frame = pd.DataFrame(records, columns=["run_dir", *AXES, "status", "error", "config", "result"])
    frame = order_settings(frame, settings) if served else frame
    duplicated = frame[frame.duplicated(list(AXES), keep=False)]
    if len(duplicated):
        raise ValueError(f"several run directories have the same parameters: {sorted(duplicated['run_dir'])}")
    return frame


def serve_settings(rows: list[dict], served: dict) -> list[dict]:
    """Each row (a run, or a cost record) repeated once per setting it serves (``served``: cell key -> settings);
    rows without an entry keep theirs. ``rows`` themselves outside a settings sweep (``served`` empty)."""
    if not served:
        return rows
    return [{**row, "setting": setting} for row in rows for setting in served.get(cell_key(row), [row["setting"]])]


def order_settings(frame, settings=()):
    """``frame`` with its "setting" column categorical: ``settings`` first, in their order, then any others as they
    appear (``groups`` sorts by it)."""
    import pandas as pd

    order = list(dict.fromkeys([*settings, *frame["setting"]]))
    return frame.assign(setting=pd.Categorical(frame["setting"], categories=order, ordered=True))


def score(result: dict | None, key: str):
    """A record's metric ``key`` (a fraction), None for a run without a record or without that score."""
    return None if result is None else result.get("metrics", {}).get(key)


def seed_scores(cells, key: str) -> dict:
    """seed -> the metric ``key`` of each run in ``cells`` (None where it has none): what paired statistics pair."""
    return {seed: score(result, key) for seed, result in zip(cells["seed"], cells["result"])}


def config_value(cfg: dict | None, dotted: str):
    """A config's value at a dotted key ('model.exit'); None where the config or a section lacks it."""
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def groups(frame, keys: list[str], by_setting: bool = True):
    """({key: value}, sub-frame) per distinct combination of ``keys``, sorted (settings in their benchmark's
    order); a frame of a settings sweep is grouped by setting first unless not ``by_setting``."""
    if by_setting and "setting" in frame and frame["setting"].astype(str).ne("").any() and "setting" not in keys:
        keys = ["setting", *keys]
    for values, group in frame.groupby(keys, sort=True, observed=True):
        yield dict(zip(keys, values)), group


def group_title(key: dict) -> str:
    """A table or figure title from a group's key (``groups``): 'setting paper · generated · fcn_mobilenetv2_100 ·
    pixel loss ce', each part only where the key has it (no setting outside a settings sweep)."""
    labels = {"setting": "setting {}", "dataset": "{}", "preset": "{}", "pixel": "pixel loss {}"}
    return " · ".join(label.format(key[name]) for name, label in labels.items() if key.get(name))


def ordered_sr(frame) -> list[str]:
    """The frame's SR combinations in table order."""
    return sorted(set(frame["sr"]), key=sr_rank)


def status_note(group) -> str:
    """'FAILED 1/3' / 'MISSING 2/3' for the runs of one cell; '' when all finished."""
    total = len(group)
    return " · ".join(f"{s} {(group['status'] == s).sum()}/{total}" for s in ("FAILED", "MISSING")
                      if (group["status"] == s).any())
