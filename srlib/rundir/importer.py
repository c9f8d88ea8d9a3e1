"""Finished run directories loaded into an MLflow store afterwards (``srlib import-runs``).

An imported run looks like a live one (``srlib.tracking.tracker``): the same name and cell tags, a child of its
benchmark's parent run, the config as params, the history it kept (``history.jsonl``: losses, lr,
validation mIoU) replayed at its steps and times, the summary at step 0 and its files as artifacts.
This is also how the committed reference runs are browsed without training them again.
"""

import logging
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Param, RunTag

from srlib.config import CONFIG_HASH, DATA_FINGERPRINT
from srlib.rundir.layout import METRICS_FILE, RUN_ARTIFACTS
from srlib.rundir.record import read_history, read_record
from srlib.sweep.cells import AXES, config_axes, run_axes, run_label
from srlib.tracking.store import ensure_experiment, open_sweep, store_lock, sweep_run
from srlib.tracking.tracker import (
    PARENT_TAG, flatten_params, history_metrics, metric_batch, metric_batches, record_summary,
)

log = logging.getLogger(__name__)


def _logged_runs(client: MlflowClient, experiment_id: str) -> set[tuple[str, str, str]]:
    """(config hash, data fingerprint or "", status) of every run in the experiment that has a config hash tag."""
    logged, token = set(), None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        logged |= {
            (run.data.tags[CONFIG_HASH], run.data.tags.get(DATA_FINGERPRINT, ""), run.info.status)
            for run in page if CONFIG_HASH in run.data.tags
        }
        token = page.token
        if not token:
            return logged


def _cell(run_dir: Path, record: dict) -> dict | None:
    """The run's axis values (``srlib.sweep.cells.run_axes``), None when neither its path, record nor config tells."""
    try:
        return run_axes(run_dir, record.get("axes") or config_axes(record.get("config") or {}))
    except (KeyError, TypeError, ValueError):
        return None


def _display(run_dir: Path, record: dict, varying: list[str], benchmark: str | None) -> tuple[str, dict]:
    """Run name and cell tags of an imported run: those its config names (a sweep run's), else its cell
    with the axes in ``varying`` in the name (the directory's name without a cell), and ``benchmark``."""
    tracking = (record.get("config") or {}).get("tracking") or {}
    cell = _cell(run_dir, record)
    name = tracking.get("run_name") or (run_label(cell, varying) if cell is not None else run_dir.name)
    tags = {**{axis: str(value) for axis, value in (cell or {}).items() if value != ""}, **(tracking.get("tags") or {})}
    if benchmark and "benchmark" not in tags:
        tags["benchmark"] = benchmark
    return name, tags


def _import_run(client: MlflowClient, experiment_id: str, run_dir: Path, record: dict, name: str, tags: dict,
                parent: str | None) -> None:
    """Create one run with the record's status from a run directory; raises on failure."""
    ended = record.get("train", {}).get("finished_at_ms") or int((run_dir / METRICS_FILE).stat().st_mtime * 1000)
    history = read_history(run_dir)
    took_ms = int(1000 * (record.get("train", {}).get("total_time_s") or 0))
    started = min((point["time_ms"] for point in history if point.get("time_ms")), default=ended - took_ms)
    tags = {**{key: str(value) for key, value in (record.get("tags") or {}).items()}, **tags,
            CONFIG_HASH: record[CONFIG_HASH], "imported_from": str(run_dir.resolve())}
    if record.get(DATA_FINGERPRINT):
        tags[DATA_FINGERPRINT] = record[DATA_FINGERPRINT]
    if parent:
        tags[PARENT_TAG] = parent
    run_id = client.create_run(experiment_id, start_time=started, tags=tags, run_name=name).info.run_id
    params = flatten_params(record.get("config") or {})
    client.log_batch(run_id, params=[Param(key, value) for key, value in params.items()])
    scalars, facts, artifacts = record_summary(record)
    for batch in metric_batches(history_metrics(history, started) + metric_batch(scalars, 0, ended)):
        client.log_batch(run_id, metrics=batch)
    client.log_batch(run_id, tags=[RunTag(key, value) for key, value in facts.items()])
    for artifact_file, value in artifacts.items():
        client.log_dict(run_id, value, artifact_file)
    for artifact in RUN_ARTIFACTS:
        if (run_dir / artifact).is_file():
            client.log_artifact(run_id, str(run_dir / artifact))
    client.set_terminated(run_id, status=record.get("status", "FINISHED"), end_time=ended)


def import_runs(run_dirs, uri: str, experiment: str, *, benchmark: str | None = None,
                description: str | None = None, attach=()) -> dict[str, int]:
    """Import finished run directories into MLflow (runs whose store was unreachable, reference runs).

    Each run directory holds a ``metrics.json`` record (``srlib.rundir.layout``; it needs "config_hash", and
    "config" or a ``config.yaml`` next to it) and may hold ``history.jsonl``. A run is named and tagged as
    its sweep named it (``tracking.run_name`` / ``tracking.tags`` of its config); records without them
    are named by their cell, with the axes that vary among the imported runs. Runs tagged with a
    benchmark (``benchmark`` tags those without one) become children of its parent run; ``attach``
    (tables, figures) are logged to that parent, ``description`` describes the experiment.

    A run whose config hash and data fingerprint already have a run with the same status in the experiment
    (imported, or tracked live to the end) is skipped, so importing twice adds nothing. An import interrupted
    half-way leaves a RUNNING run, which does not count: the next import adds a complete one.

    Returns {"imported": n, "skipped": n, "missing": n} (missing = directory without metrics.json,
    e.g. a run still training or failed). Raises FileNotFoundError for a directory that does not exist
    and ValueError for a malformed metrics.json, before importing anything.
    """
    if attach and not benchmark:
        raise ValueError("files to attach need the benchmark whose parent run holds them")
    run_dirs = [Path(run_dir) for run_dir in run_dirs]
    records = []
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            raise FileNotFoundError(f"run directory {run_dir} does not exist")
        record = read_record(run_dir)
        if record is not None and not record.get(CONFIG_HASH):
            raise ValueError(f"{run_dir / METRICS_FILE} has no {CONFIG_HASH!r}")
        records.append(record)
    found = [(d, r) for d, r in zip(run_dirs, records) if r is not None]
    for run_dir, record in zip(run_dirs, records):
        if record is None:
            log.warning("%s: no metrics.json (not finished), not imported", run_dir)
    cells = [cell for cell in (_cell(d, r) for d, r in found) if cell is not None]
    varying = [axis for axis in AXES if len({str(cell[axis]) for cell in cells}) > 1]
    experiment_id = ensure_experiment(uri, experiment, description)
    client = MlflowClient(tracking_uri=uri)
    logged = _logged_runs(client, experiment_id)
    parents = {}
    counts = {"imported": 0, "skipped": 0, "missing": len(run_dirs) - len(found)}
    for run_dir, record in found:
        key = (record[CONFIG_HASH], record.get(DATA_FINGERPRINT, ""), record.get("status", "FINISHED"))
        if key in logged:
            counts["skipped"] += 1
            continue
        name, tags = _display(run_dir, record, varying, benchmark)
        if "benchmark" in tags and tags["benchmark"] not in parents:
            with store_lock(uri):
                parents[tags["benchmark"]] = sweep_run(client, experiment_id, tags["benchmark"])
        _import_run(client, experiment_id, run_dir, record, name, tags, parents.get(tags.get("benchmark")))
        logged.add(key)
        counts["imported"] += 1
    if attach:
        open_sweep(uri, experiment, benchmark, description, attach)
    return counts
