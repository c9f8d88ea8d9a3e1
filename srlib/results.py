"""The run record: what a run directory holds, written in one place and read back in one place.

``collect_runs`` reads many run directories into a pandas frame for tables and figures (pandas is
imported there only: the workflow imports this module at parse time).

A run directory (``srlib run CONFIG --out RUN_DIR``) holds::

    run.yaml        the config fragment the workflow wrote (workflow runs only)
    config.yaml     the resolved config, written when training starts
    checkpoint/     while training (removed once metrics.json exists)
    outcome.json    {"status": "FINISHED" | "FAILED", "config_hash", "error": str | null}
                    (``srlib run --outcome``; the workflow's declared output)
    metrics.json    the run record of a finished run, written atomically and last: the source of truth
                    for tables and MLflow imports
    history.jsonl   the metric points the run logged, one JSON object a line: {"step": iteration,
                    "time_ms": when it was measured (ms since the epoch), "metrics": {name: number}}
                    (training losses, lr, validation mIoU on a subset); a point is written once the
                    checkpoint covering its step exists, so a resumed run keeps each step once
    .lock           held (``fcntl.flock``) by the process working in the directory; holds its PID
    per_class_iou.csv, pictures.png, predictions.npz   evaluation artifacts (``srlib.evaluate``)

``metrics.json`` (built by ``run_record``)::

    status          "FINISHED"
    config_hash     12 hex digits identifying what the run computes (``srlib.identity.config_hash``)
    data_fingerprint  16 hex digits identifying the data it trained and evaluated on, by content
                    (``srlib.data.check.fingerprint``); a run is the same run only on the same data
    config          the resolved run config (``srlib.config.DEFAULTS`` has every key)
    axes            {"dataset", "preset", "pixel", "setting", "sr", "seed"}: the sweep cell (``srlib.sweep.run_axes``;
                    setting '' outside a settings sweep)
    srlib_version, git_commit, tags   code version; tags as logged to MLflow (``tracking.run_tags``)
    threads, device                   where it ran
    classes, palette                  the dataset's class names and RGB colours
    metrics         validation scores, fractions (``srlib.metrics.SegmentationMetrics.compute``); with exits also
                    ``exit<k>_miou`` (k = 1..N, the head last), ``teacher_agreement`` and
                    ``head_accuracy_teacher_wrong`` (``srlib.metrics.ExitAgreement``)
    cost            parameters, MACs / FLOPs (test and train), step time in s, peak memory in MiB
    train           {"iters", "wall_time_s", "final_loss", "final_terms" (the loss terms last logged, gaps
                    included), "eval_time_s", "total_time_s", "finished_at_ms"}

A run's status as tables count it: FINISHED (metrics.json), FAILED (outcome.json says so) or MISSING
(neither: not run yet, or killed).
"""

import glob
import json
import os
from pathlib import Path

from srlib.config import CONFIG_HASH, DATA_FINGERPRINT, MEMORY_KINDS, STATUSES  # noqa: F401 - until the move
from srlib.files import read_json, read_yaml, replace_durably, write_json_atomic
from srlib.sweep import AXES, cell_key, config_axes, run_axes, sr_rank

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.jsonl"
# Files a finished run logs to MLflow as artifacts, when present (train.log: workflow runs only)
RUN_ARTIFACTS = ("config.yaml", "metrics.json", "per_class_iou.csv", "pictures.png", "predictions.npz", "train.log")
OUTCOME_FILE = "outcome.json"
RUN_STATUSES = ("FINISHED", "FAILED", "MISSING")  # a run directory's status in tables
FAILURE_METRICS = {
    "thin_part_iou": "thin-part IoU",
    "body_iou": "body IoU",
    "small_object_iou": "small-object IoU",
    "hallucination_rate": "hallucinated-class rate",
}
METRIC_NAMES = {"miou": "mIoU", "pixel_accuracy": "pixel accuracy", **FAILURE_METRICS}  # display names of record metrics


def append_history(run_dir: str | Path, points: list[dict]) -> None:
    """Append metric points ({"step", "time_ms", "metrics"}) to the run's history.jsonl and fsync it."""
    if not points:
        return
    with open(Path(run_dir) / HISTORY_FILE, "a") as handle:
        handle.writelines(json.dumps(point, allow_nan=True) + "\n" for point in points)
        handle.flush()
        os.fsync(handle.fileno())


def read_history(run_dir: str | Path) -> list[dict]:
    """The run's logged metric points, oldest first; [] without a history. ValueError names the file and
    line of a damaged point."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file():
        return []
    points = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            points.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not a JSON metric point ({error})") from None
    return points


def truncate_history(run_dir: str | Path, length: int) -> None:
    """Keep the first ``length`` points of the run's history (those a checkpoint covers), atomically and
    durably, as history.jsonl is appended (``srlib.files.replace_durably``)."""
    path = Path(run_dir) / HISTORY_FILE
    lines = path.read_text().splitlines(keepends=True) if path.is_file() else []
    if len(lines) > length:
        replace_durably(path, lambda tmp: tmp.write_text("".join(lines[:length])))


# -- writing ------------------------------------------------------------------------------------------
def run_record(*, cfg: dict, config_hash: str, data_fingerprint: str, axes: dict, version: str, tags: dict,
               device: str, info: dict, metrics: dict, cost: dict, train: dict) -> dict:
    """The metrics.json record of a finished run (fields: module docstring); ``info`` = ``dataset_info``."""
    return {
        "status": "FINISHED",
        CONFIG_HASH: config_hash,
        DATA_FINGERPRINT: data_fingerprint,
        "config": cfg,
        "axes": axes,
        "srlib_version": version,
        "git_commit": tags.get("git_commit"),
        "tags": tags,
        "threads": cfg["threads"],
        "device": device,
        "classes": list(info["classes"]),
        "palette": [list(color) for color in info["palette"]],
        "metrics": metrics,
        "cost": cost,
        "train": train,
    }


def write_outcome(path: str | Path, status: str, config_hash: str, error: str | None = None) -> None:
    """outcome.json: FINISHED, or FAILED with the error that stopped training."""
    if status not in ("FINISHED", "FAILED"):
        raise ValueError(f"an outcome is FINISHED or FAILED, got {status!r}")
    write_json_atomic(path, {"status": status, CONFIG_HASH: config_hash, "error": error})


# -- reading ------------------------------------------------------------------------------------------
def read_record(run_dir: str | Path) -> dict | None:
    """The run's metrics.json, its "config" filled from config.yaml if missing; None when not written yet.

    ValueError names the file for invalid JSON or YAML, a status outside ``STATUSES``, or a record without its
    "metrics" or (nor a config.yaml beside it) "config".
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return None
    record = read_json(path)
    if not isinstance(record, dict):
        raise ValueError(f"{path}: not a run record (a JSON object), got a {type(record).__name__}")
    if record.get("status", "FINISHED") not in STATUSES:
        raise ValueError(f"{path}: status must be one of {STATUSES}, got {record['status']!r}")
    if "config" not in record and (Path(run_dir) / "config.yaml").is_file():
        record["config"] = read_yaml(Path(run_dir) / "config.yaml")
    missing = [key for key in ("metrics", "config") if not isinstance(record.get(key), dict)]
    if missing:
        raise ValueError(f"{path}: not a finished run's record: no {' and no '.join(map(repr, missing))}")
    return record


def same_run(saved: dict, config_hash: str, data_fingerprint: str) -> bool:
    """Whether a record or checkpoint ``saved`` is of this config and data (ones from before fingerprints
    were kept match on the config hash)."""
    return (saved.get(CONFIG_HASH) == config_hash
            and saved.get(DATA_FINGERPRINT, data_fingerprint) == data_fingerprint)


def finished_record(run_dir: str | Path, config_hash: str, data_fingerprint: str) -> dict | None:
    """The run's metrics.json when it is a finished run of ``config_hash`` on ``data_fingerprint`` with
    nothing left to complete (no ``checkpoint/``), else None. Reads one JSON file: no torch, so a finished
    run's rerun stays cheap."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file() or (Path(run_dir) / "checkpoint").exists():
        return None
    record = read_json(path)
    return record if same_run(record, config_hash, data_fingerprint) else None


def load_run(run_dir: str | Path) -> dict:
    """One run directory -> {"run_dir", dataset, preset, pixel, sr, seed, "status" (RUN_STATUSES), "error",
    "config", "result" (the record or None)}.

    The axis values come from the path's key~value segments, else from the record's "axes", else from the
    config. FileNotFoundError when outcome.json says FINISHED and metrics.json is absent.
    """
    run_dir = Path(run_dir)
    outcome_path = run_dir / OUTCOME_FILE
    outcome = read_json(outcome_path) if outcome_path.exists() else None
    result = None
    if outcome is None or outcome.get("status") == "FINISHED":
        result = read_record(run_dir)
        if result is None and outcome is not None:
            raise FileNotFoundError(f"{run_dir / METRICS_FILE}: missing, but {outcome_path} says the run FINISHED")
    status = "FINISHED" if result is not None else (outcome or {}).get("status", "MISSING")
    if status not in RUN_STATUSES:
        raise ValueError(f"{outcome_path}: unknown status {status!r}; expected FINISHED or FAILED")
    cfg = (result or {}).get("config")
    for name in ("config.yaml", "run.yaml"):
        if cfg is None and (run_dir / name).exists():
            cfg = read_yaml(run_dir / name)
    known = (result or {}).get("axes") or (config_axes(cfg) if cfg is not None else None)
    return {"run_dir": str(run_dir), **run_axes(run_dir, known), "status": status,
            "error": (outcome or {}).get("error"), "config": cfg, "result": result}


# -- many runs: a pandas frame, one row per run ---------------------------------------------------------
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
    ``served`` (``srlib.sweep.expand``'s), one row per setting a run serves (``serve_settings``)."""
    import pandas as pd

    records = [load_run(d) for d in expand_runs(runs)]
    frame = pd.DataFrame(records, columns=["run_dir", *AXES, "status", "error", "config", "result"])
    frame = serve_settings(frame, served, settings) if served else frame
    duplicated = frame[frame.duplicated(list(AXES), keep=False)]
    if len(duplicated):
        raise ValueError(f"several run directories have the same parameters: {sorted(duplicated['run_dir'])}")
    return frame


def serve_settings(frame, served: dict, settings=()):
    """Each row (a run, or a cost record) repeated once per setting it serves (``served``: cell key -> settings;
    rows without an entry keep theirs), the settings in ``settings``' order (a categorical column)."""
    import pandas as pd

    rows = [{**row, "setting": setting} for row in frame.to_dict("records")
            for setting in served.get(cell_key(row), [row["setting"]])]
    out = pd.DataFrame(rows, columns=frame.columns)
    order = list(dict.fromkeys([*settings, *out["setting"]]))
    out["setting"] = pd.Categorical(out["setting"], categories=order, ordered=True)
    return out


def score(result: dict | None, key: str):
    """A record's metric ``key`` (a fraction), None for a run without a record or without that score."""
    return None if result is None else result.get("metrics", {}).get(key)


def groups(frame, keys: list[str]):
    """({key: value}, sub-frame) per distinct combination of ``keys``, sorted (settings in their benchmark's
    order); a frame of a settings sweep is grouped by setting first."""
    if "setting" in frame and frame["setting"].astype(str).ne("").any() and "setting" not in keys:
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
