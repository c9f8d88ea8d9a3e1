"""What a run leaves to read: its record ``metrics.json`` (written once, read back), ``outcome.json``, the metric
history ``history.jsonl``, and a run directory read back whole for the tables (``load_run``). File contents:
``srlib.rundir.layout``. No torch, no MLflow: the workflow and the tables read records without them.
"""

import json
import os
from pathlib import Path

from srlib.config import CONFIG_HASH, DATA_FINGERPRINT, STATUSES, load_config, resolve_auto
from srlib.data.check import data_fingerprint
from srlib.files import read_json, read_yaml, replace_durably, write_json_atomic
from srlib.identity import config_hash, identity_changes
from srlib.rundir import lock
from srlib.rundir.layout import CHECKPOINT_DIR, CONFIG_FILE, HISTORY_FILE, METRICS_FILE, OUTCOME_FILE, RUN_STATUSES
from srlib.sweep.cells import config_axes, run_axes


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
    if "config" not in record and (Path(run_dir) / CONFIG_FILE).is_file():
        record["config"] = read_yaml(Path(run_dir) / CONFIG_FILE)
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
    if not path.is_file() or (Path(run_dir) / CHECKPOINT_DIR).exists():
        return None
    record = read_json(path)
    return record if same_run(record, config_hash, data_fingerprint) else None


def finished_run(config, overrides: list[str], run_dir: str | Path, outcome: str | Path | None) -> dict | None:
    """The record of a finished run of this config (a path or dict, with ``--set`` overrides) and data in
    ``run_dir``, its ``outcome`` file written (when given), else None: what ``srlib run`` answers before training.

    Answered without importing torch (for a config naming its device) or MLflow. Only then is the data
    fingerprinted ahead of the full config check, so a new run's misspelt preset or dataset is reported as such,
    not as a missing dataset root. The outcome is written under the run directory's lock, as every write there,
    which also removes the temporary files a process killed mid-write left (``srlib.rundir.lock``); with nothing
    to write or remove, a read-only run directory is answered too."""
    if not os.path.isfile(os.path.join(run_dir, METRICS_FILE)):
        return None
    fast = resolve_auto(load_config(config, overrides))
    done = finished_record(run_dir, config_hash(fast), data_fingerprint(fast["data"]))
    if done is not None and (outcome is not None or lock.stale_temps(Path(run_dir))):
        with lock.lock(run_dir):
            if outcome is not None:
                write_outcome(outcome, done["status"], done["config_hash"])
    return done


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
    for name in (CONFIG_FILE, "run.yaml"):
        if cfg is None and (run_dir / name).exists():
            cfg = read_yaml(run_dir / name)
    known = (result or {}).get("axes") or (config_axes(cfg) if cfg is not None else None)
    return {"run_dir": str(run_dir), **run_axes(run_dir, known), "status": status,
            "error": (outcome or {}).get("error"), "config": cfg, "result": result}


def difference(saved: dict, cfg: dict, config_hash: str, data_fingerprint: str) -> str:
    """What differs between a saved record or checkpoint and the run of ``cfg`` (its hash and data fingerprint), as
    a diff does ('saved -> this run'): the keys of the run identity (``srlib.identity.identity_changes``; the
    config hashes where the saved run has no config or no key differs), then the data fingerprint and data.root."""
    old = saved.get("config") if isinstance(saved.get("config"), dict) else None
    changes = identity_changes(old, cfg) if old is not None else []
    if saved.get(CONFIG_HASH) != config_hash and not changes:
        changes = [f"config hash: {saved.get(CONFIG_HASH)} -> {config_hash}"]
    if saved.get(DATA_FINGERPRINT, data_fingerprint) != data_fingerprint:
        changes.append(f"data fingerprint (item ids, file sizes): {saved[DATA_FINGERPRINT]} -> {data_fingerprint}")
        root = (old or {}).get("data", {}).get("root")
        if root is not None and root != cfg["data"]["root"]:
            changes.append(f"data.root: {json.dumps(root)} -> {json.dumps(cfg['data']['root'])}")
    return f"saved -> this run: {'; '.join(changes)}"


# -- the metric history ---------------------------------------------------------------------------------
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
