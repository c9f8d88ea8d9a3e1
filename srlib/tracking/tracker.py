"""One MLflow run of SR-Bench: the fail-soft ``Tracker`` and ``open_run``, which starts a run, continues the one a
run directory kept, or adopts the RUNNING run a killed process created.

Tracking never stops training. If the store cannot be reached when a run opens, or fails later, the tracker warns
once (logging and stderr, naming the URI and the error) and turns into a no-op; the run still writes its
``metrics.json``, which ``srlib.rundir.importer`` loads into MLflow afterwards.

A sweep's runs are named by their cell (``srlib.sweep.cells.run_label``), tagged ``benchmark`` and one tag per axis, and
are children of the benchmark's parent run (``srlib.tracking.store.sweep_run``), which holds the tables and
figures. End-of-run scores are logged at step 0 in percent (``val/miou_pct``), cost numbers as ``cost/<key>``,
constant facts (memory kind, FLOP input shape, batch) as tags ``cost.<key>``.
"""

import hashlib
import json
import logging
import os
import time
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from srlib.config import CONFIG_HASH, DATA_FINGERPRINT, MEMORY_KINDS, STATUSES, flatten
from srlib.files import kill_point
from srlib.sweep.cells import config_axes, run_label
from srlib.tracking.store import (
    PROBE_HTTP_ENV, RUN_HTTP_ENV_DEFAULTS, ensure_experiment, http_env, read_marker, sweep_run,
)

log = logging.getLogger("srlib.tracking")  # one logger for the package's warnings

PARENT_TAG = "mlflow.parentRunId"
RUN_DIR_TAG = "run_dir"  # tag of a run: the absolute path of its run directory
IDENTITY_TAG = "run_identity"  # tag of a run: its run directory, config hash and data fingerprint (run_identity)
COST_FACTS = ("memory_kind", "flop_input_shape", "step_time_batch")  # constant per run: tags, not metrics
MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limit


def flatten_params(config: dict) -> dict[str, str]:
    """Nested config -> {"a.b.c": "value"}; lists as JSON, other leaves as str."""
    return {key: json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
            for key, value in flatten(config).items()}


def metric_batch(metrics: dict, step: int, timestamp_ms: int | None = None) -> list[Metric]:
    """{name: number (Python, NumPy or 0-d tensor)} -> MLflow Metrics at ``step``, timestamped
    ``timestamp_ms`` (ms since the epoch; default now).

    Raises ValueError naming a key whose value is not a number.
    """
    stamp = int(time.time() * 1000) if timestamp_ms is None else int(timestamp_ms)
    batch = []
    for key, value in metrics.items():
        try:
            batch.append(Metric(key, float(value), stamp, int(step)))
        except (TypeError, ValueError):
            raise ValueError(f"metric {key!r} must be a number, got {type(value).__name__}: {value!r}") from None
    return batch


def history_metrics(points: list[dict], default_ms: int | None = None) -> list[Metric]:
    """MLflow Metrics of history points ({"step", "time_ms", "metrics"}), each at its own timestamp
    (``default_ms``, else now, for a point without one)."""
    return [metric for point in points
            for metric in metric_batch(point["metrics"], point["step"], point.get("time_ms") or default_ms)]


def metric_batches(metrics: list[Metric]):
    """``metrics`` in slices of at most MAX_METRICS_PER_BATCH, the most one ``log_batch`` call accepts."""
    return (metrics[start:start + MAX_METRICS_PER_BATCH] for start in range(0, len(metrics), MAX_METRICS_PER_BATCH))


def record_summary(record: dict) -> tuple[dict[str, float], dict[str, str], dict[str, object]]:
    """Split a metrics.json record's "metrics" and "cost" into (metrics, tags, JSON artifacts).

    Scores (fractions in the record) become percent, as in the tables: ``val/<name>_pct`` over the whole
    evaluation split (per-class lists stay artifacts: the UI would draw a chart per class). Cost numbers become
    ``cost/<key>`` (units in the key: ``_s``, ``_mib``); ``COST_FACTS`` become tags ``cost.<key>`` (the memory kind
    in words). Other lists and dicts become ``<section>/<name>.json``
    artifacts; None values are skipped.
    """
    scalars, tags, artifacts = {}, {}, {}
    for name, value in (record.get("metrics") or {}).items():
        if isinstance(value, (int, float)):
            scalars[f"val/{name}_pct"] = 100.0 * value
        elif value is not None:
            artifacts[f"metrics/{name}.json"] = value
    for name, value in (record.get("cost") or {}).items():
        if name in COST_FACTS or isinstance(value, str):
            tags[f"cost.{name}"] = MEMORY_KINDS.get(value, str(value)) if isinstance(value, str) else json.dumps(value)
        elif isinstance(value, (int, float)):
            scalars[f"cost/{name}"] = float(value)
        elif value is not None:
            artifacts[f"cost/{name}.json"] = value
    return scalars, tags, artifacts


def _warn_unreachable(uri: str, action: str, error: Exception) -> None:
    message = (
        f"MLflow tracking store {uri} failed while {action}: {type(error).__name__}: {str(error)[:500]}. "
        f"Training continues WITHOUT MLflow tracking; metrics.json stays complete. Import the finished run "
        f"later with `srlib import-runs <run dir> --uri {uri} --experiment <name>`."
    )
    log.warning(message)  # shown on stderr whether or not logging is configured (logging's last resort)


class Tracker:
    """One MLflow run. After a tracking failure (warned once) every method is a no-op; ``active`` says which.

    Use as a context manager to finish FINISHED, or FAILED when the block raises.
    """

    def __init__(self, client: MlflowClient | None, run_id: str | None, uri: str):
        self.client, self.run_id, self.uri = client, run_id, uri

    @property
    def active(self) -> bool:
        return self.run_id is not None

    def _call(self, action: str, method: str, *args, **kwargs) -> None:
        if not self.active:
            return
        try:
            getattr(self.client, method)(self.run_id, *args, **kwargs)
        except Exception as error:  # noqa: BLE001 -- any tracking failure must leave training running
            _warn_unreachable(self.uri, action, error)
            self.client = self.run_id = None

    def log_metrics(self, metrics: dict, step: int, timestamp_ms: int | None = None) -> None:
        """Log {name: number} at iteration ``step``; ValueError naming a non-numeric value."""
        self._call(f"logging metrics at step {step}", "log_batch", metrics=metric_batch(metrics, step, timestamp_ms))

    def log_history(self, points: list[dict]) -> None:
        """Log metric points of a run's history ({"step", "time_ms", "metrics"}, ``srlib.rundir.record``), in
        batches MLflow accepts. A point logged again with its own timestamp is one point in the store
        (MLflow's SQL stores, the server's included, drop exact duplicates)."""
        for batch in metric_batches(history_metrics(points)):
            self._call("logging the metric history", "log_batch", metrics=batch)

    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        """Copy a local file or folder into the run's artifacts (under ``artifact_path`` if given)."""
        self._call(f"logging artifact {path}", "log_artifact", str(path), artifact_path)

    def log_dict(self, data, artifact_file: str) -> None:
        """Store a JSON-serialisable object as artifact ``artifact_file`` (``.json`` or ``.yaml``)."""
        self._call(f"logging {artifact_file}", "log_dict", data, artifact_file)

    def log_summary(self, record: dict, step: int = 0, timestamp_ms: int | None = None) -> None:
        """Log a metrics.json record's "metrics" and "cost" as ``import_runs`` does (``record_summary``): metrics
        at ``step`` (0: the UI draws one bar per run, not a dot at the last iteration), tags, JSON artifacts."""
        scalars, tags, artifacts = record_summary(record)
        if scalars:
            self.log_metrics(scalars, step, timestamp_ms)
        if tags:
            self._call("logging cost tags", "log_batch", tags=[RunTag(key, value) for key, value in tags.items()])
        for artifact_file, value in artifacts.items():
            self.log_dict(value, artifact_file)

    def finish(self, status: str = "FINISHED") -> None:
        """Terminate the run with ``status`` in STATUSES."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        self._call(f"finishing the run as {status}", "set_terminated", status=status)
        self.client = self.run_id = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        self.finish("FAILED" if exc_type else "FINISHED")
        return False


def run_display(cfg: dict) -> tuple[str, dict[str, str]]:
    """A run config's MLflow run name and cell tags: ``tracking.run_name`` and ``tracking.tags`` as the sweep
    wrote them, else the SR cell and seed ('mea+srf · s0') and the axis values its config implies."""
    tracking = cfg.get("tracking") or {}
    axes = config_axes(cfg)
    tags = {**{axis: str(value) for axis, value in axes.items() if value != ""}, **(tracking.get("tags") or {})}
    return tracking.get("run_name") or run_label(axes), tags


def run_identity(run_dir, config_hash: str, data_fingerprint: str | None) -> str:
    """16 hex digits naming one config on one data in one run directory (its absolute path): the value of
    ``IDENTITY_TAG``, by which a rerun finds the MLflow run a killed process created but had not yet recorded."""
    text = f"{Path(run_dir).resolve()}\0{config_hash}\0{data_fingerprint}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def open_run(uri: str, experiment: str, run_name: str, params: dict, tags: dict, run_id: str | None = None,
             adopt: bool = False, keep_id=None) -> Tracker:
    """Start an MLflow run, or continue the run ``run_id`` of this store, or with ``adopt`` a RUNNING run whose
    ``IDENTITY_TAG`` is that of ``tags`` (a process killed after creating it, before its id was kept).

    ``params`` is the nested resolved config, logged with dotted keys (a continued run gets those it lacks:
    MLflow refuses to change logged ones); ``tags`` values are stringified. A saved run of another config hash or
    data fingerprint is not continued: it is ended KILLED if still RUNNING, as are further RUNNING runs of this
    identity.
    ``keep_id(run_id)`` is called as soon as a run other than ``run_id`` is chosen, before anything else can
    fail (the caller saves it). With a ``benchmark`` tag a new run becomes a child of that benchmark's parent
    run (``sweep_run``), if the store has one. Where ``$SRLIB_TRACKING_MARKER`` names the marker
    ``init_tracking`` wrote for this store and experiment (workflow jobs), its ids are used and the look-ups
    skipped: a new run then costs two requests (create, params), which keeps hundreds of jobs starting together
    on one tracking server fast.
    Never raises for tracking problems: an unreachable store gives a warned no-op Tracker, and a run created
    before the store failed is ended KILLED first (if the store still answers).
    """
    tags = {key: str(value) for key, value in tags.items()}
    action = f"opening run {run_name!r} in experiment {experiment!r}"
    known = read_marker(uri, experiment)
    try:
        with http_env(PROBE_HTTP_ENV):
            experiment_id = known.get("experiment_id") or ensure_experiment(uri, experiment)
            client = MlflowClient(tracking_uri=uri)
            run, continued = _choose_run(client, experiment_id, run_id, tags, adopt)
            if run is None:
                run = _create_run(client, experiment_id, known, run_name, tags)
    except Exception as error:  # noqa: BLE001 -- training must go on without the store
        _warn_unreachable(uri, action, error)
        return Tracker(None, None, uri)
    if keep_id is not None and run.info.run_id != run_id:
        keep_id(run.info.run_id)
        kill_point("mlflow-run-id-kept")
    try:
        with http_env(PROBE_HTTP_ENV):
            _prepare_run(client, run, flatten_params(params), continued)
    except Exception as error:  # noqa: BLE001
        _end_runs(client, [run.info.run_id])
        _warn_unreachable(uri, action, error)
        return Tracker(None, None, uri)
    for name, value in RUN_HTTP_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    return Tracker(client, run.info.run_id, uri)


def _choose_run(client: MlflowClient, experiment_id: str, run_id: str | None, tags: dict, adopt: bool):
    """(run to continue or None, whether there is one): the saved ``run_id`` if the store has it with the config
    hash and data fingerprint of ``tags`` (a run directory moved since keeps its run; a tag the run lacks, from
    before it was kept, does not count), else with ``adopt`` the earliest RUNNING run with the ``IDENTITY_TAG`` of
    ``tags``. The RUNNING runs passed over are ended KILLED: the caller holds the run directory's lock."""
    saved = _get_run(client, run_id) if run_id is not None else None
    if saved is not None and all(saved.data.tags.get(key, tags.get(key)) == tags.get(key)
                                 for key in (CONFIG_HASH, DATA_FINGERPRINT)):
        return saved, True
    stale = [saved.info.run_id] if saved is not None and saved.info.status == "RUNNING" else []
    identity = tags.get(IDENTITY_TAG)
    orphans = client.search_runs(
        [experiment_id], filter_string=f"tags.{IDENTITY_TAG} = '{identity}' and attributes.status = 'RUNNING'",
        max_results=100, order_by=["attributes.start_time ASC"]) if adopt and identity is not None else []
    _end_runs(client, stale + [run.info.run_id for run in orphans[1:]])
    return (orphans[0], True) if orphans else (None, False)


def _create_run(client: MlflowClient, experiment_id: str, known: dict, run_name: str, tags: dict):
    """A new run, a child of its benchmark's parent run when the store has one (``known``: the workflow's
    marker, ``read_marker``); kill point ``mlflow-run-created`` follows."""
    if "benchmark" in tags:
        parent = (known["parent_run_id"] if known.get("benchmark") == tags["benchmark"]
                  else sweep_run(client, experiment_id, tags["benchmark"], create=False))
        tags = {**tags, PARENT_TAG: parent} if parent else tags
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    kill_point("mlflow-run-created")
    return run


def _prepare_run(client: MlflowClient, run, params: dict[str, str], continued: bool) -> None:
    """Log the params ``run`` lacks; a continued run is also tagged ``resumed`` and set RUNNING again."""
    missing = [Param(key, value) for key, value in params.items() if key not in run.data.params]
    resumed = [RunTag("resumed", "true")] if continued else []
    if missing or resumed:
        client.log_batch(run.info.run_id, params=missing, tags=resumed)
    if continued and run.info.status != "RUNNING":
        client.update_run(run.info.run_id, status="RUNNING")


def _end_runs(client: MlflowClient, run_ids: list[str]) -> None:
    """End runs nobody works on any more KILLED, as far as the store answers (one short try each)."""
    for run_id in run_ids:
        try:
            with http_env(PROBE_HTTP_ENV):
                client.set_terminated(run_id, "KILLED")
        except Exception as error:  # noqa: BLE001 -- the caller warns about the store
            log.info("could not end MLflow run %s as KILLED: %s", run_id, error)


def _get_run(client: MlflowClient, run_id: str):
    """The run ``run_id``, or None when the store has no such run."""
    try:
        return client.get_run(run_id)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
