"""The MLflow store: where it is, created with its experiment safely from many processes, a moved store's
artifact locations repaired, the benchmark's parent run, and the marker the workflow writes once they exist.

Layout of the default store: ``<results dir>/mlflow.db`` (SQLite) with artifacts in ``<results dir>/mlruns/``.
Creating a SQLite store and experiment is serialised across processes by a lock file ``mlflow.db.lock`` next to
the database, so parallel jobs never race on a fresh store. MLflow records artifact locations as absolute paths:
when a store is opened after its folder moved, ``ensure_experiment`` points them at the ``mlruns/`` beside the
database again and says so.
"""

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import time
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

log = logging.getLogger("srlib.tracking")  # one logger for the package's warnings

ARTIFACT_DIR = "mlruns"
DESCRIPTION_TAG = "mlflow.note.content"  # an experiment's or run's description in the MLflow UI
SWEEP_TAG = "sweep_parent"  # tag of a benchmark's parent run: the benchmark name
# A saved view of the runs table (the UI's share link ``#/experiments/<id>/runs?viewStateShareKey=by-cell``):
# grouped by SR cell (mean over its seeds), with the mIoU column. The format is that of MLflow 3's UI.
CELL_VIEW = "by-cell"
CELL_VIEW_STATE = {"groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": "sr"}]},
                   "selectedColumns": ["metrics.`val/miou_pct`", "tags.`sr`", "tags.`seed`"]}
LOCK_TIMEOUT_S = 120
# While a run opens: one HTTP attempt with a short timeout, so a dead server costs seconds, not minutes.
PROBE_HTTP_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
# Afterwards (unless the user set them): few retries, so a server dying mid-run stalls training briefly.
RUN_HTTP_ENV_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}

# MLflow logs schema migrations and store set-up at INFO; SR-Bench's own warnings stay visible.
for _name in ("mlflow", "alembic"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (absolute with four slashes), else None."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def _check_writable(db: Path) -> None:
    """Create the database's folder; raise OSError if the folder or an existing file is not writable.

    MLflow itself retries a failing SQLite engine for about 100 s before giving up.
    """
    db.parent.mkdir(parents=True, exist_ok=True)
    for path in (db.parent, db):
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(f"SQLite tracking store path {path} is not writable")


@contextlib.contextmanager
def store_lock(uri: str):
    """Hold an exclusive lock file next to a SQLite store; no-op for other stores."""
    db = _sqlite_path(uri)
    if db is None:
        yield
        return
    _check_writable(db)
    with open(f"{db}.lock", "a") as handle:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"lock {db}.lock held by another process for over {LOCK_TIMEOUT_S} s")
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def http_env(values: dict[str, str], keep_user: bool = False):
    """Temporarily set MLflow's HTTP client settings ``values``; with ``keep_user`` those the user set stay."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update({name: value for name, value in values.items() if not (keep_user and saved[name] is not None)})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def check_store(uri: str) -> None:
    """Raise ValueError naming ``uri`` when its tracking store cannot be reached or opened. A tracking server gets
    RUN_HTTP_ENV_DEFAULTS' few retries (seconds for a dead server, not MLflow's minutes), or the user's own
    MLFLOW_HTTP_REQUEST_* settings where set. Creates a missing SQLite store."""
    try:
        with store_lock(uri), http_env(RUN_HTTP_ENV_DEFAULTS, keep_user=True):
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as error:  # MlflowException, OSError, requests' errors: all mean this store is unusable
        path_like = "://" not in uri and not uri.startswith("databricks")
        hint = " (a SQLite store is written sqlite:///path/to/mlflow.db)" if path_like else ""
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise ValueError(f"tracking store {uri!r} cannot be used{hint}: {reason}") from None


def ensure_experiment(uri: str, name: str, description: str | None = None) -> str:
    """Create the store (SQLite: database file and tables) and the experiment if missing; return its id.

    Idempotent and safe to call from several processes at once. For a SQLite store the experiment's
    artifacts go to ``mlruns/`` next to the database, and artifact locations left behind by a moved
    store are pointed there again (``relocate_artifacts``). ``description`` becomes the experiment's
    description in the UI. Raises MlflowException / OSError when the store cannot be reached,
    ValueError when the experiment exists but is deleted.
    """
    db = _sqlite_path(uri)
    with store_lock(uri):
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(name)
        if db is not None:
            relocate_artifacts(db)
        if experiment is None:
            location = (db.parent / ARTIFACT_DIR).resolve().as_uri() if db else None
            tags = {DESCRIPTION_TAG: description} if description else None
            try:
                return client.create_experiment(name, artifact_location=location, tags=tags)
            except MlflowException as error:  # another process (on a server store) created it first
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment = client.get_experiment_by_name(name)
    if description and experiment.tags.get(DESCRIPTION_TAG) != description:
        client.set_experiment_tag(experiment.experiment_id, DESCRIPTION_TAG, description)
    if experiment.lifecycle_stage == "deleted":
        raise ValueError(
            f"MLflow experiment {name!r} in {uri} is deleted; restore it "
            f"(`mlflow experiments restore --experiment-id {experiment.experiment_id}`) or choose another name"
        )
    return experiment.experiment_id


def relocate_artifacts(db: Path) -> list[tuple[str, str]]:
    """Point the artifact locations of a SQLite store that was moved at the ``mlruns/`` beside it.

    MLflow stores each experiment's and run's artifact location as an absolute ``file://`` URI, so after
    ``results/`` moves the UI shows runs without artifacts and no error. Every experiment whose location
    is a ``.../mlruns`` folder that no longer exists, beside no database of this name (the store is not
    there any more), is rewritten (its runs' artifact URIs too), with a warning naming both paths.
    Returns the (old, new) locations rewritten.
    """
    new = (db.parent / ARTIFACT_DIR).resolve().as_uri()
    moved = []
    with contextlib.closing(sqlite3.connect(db)) as connection, connection:
        for experiment_id, old in connection.execute("SELECT experiment_id, artifact_location FROM experiments"):
            folder = Path(old.removeprefix("file://"))
            if (old != new and old.startswith("file://") and folder.name == ARTIFACT_DIR and not folder.exists()
                    and not (folder.parent / db.name).exists()):
                moved.append((experiment_id, old))
        for experiment_id, old in moved:
            connection.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
                               (new, experiment_id))
            connection.execute(
                "UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) "
                "WHERE experiment_id = ? AND artifact_uri LIKE ?",
                (new, len(old) + 1, experiment_id, f"{old}/%"),
            )
    for _, old in moved:
        log.warning("MLflow store %s was moved: artifact location %s no longer exists; now %s", db, old, new)
    return [(old, new) for _, old in moved]


def sweep_run(client: MlflowClient, experiment_id: str, benchmark: str, create: bool = True) -> str | None:
    """Id of the benchmark's parent run in the experiment (tag ``SWEEP_TAG``); if missing, created FINISHED,
    or None when not ``create``.

    The sweep's runs are its children (``PARENT_TAG``) and its tables and figures its artifacts. Create it
    once, before the runs start (``srlib init-tracking --benchmark``), under ``store_lock``: parallel jobs
    would each create one on a tracking server.
    """
    found = client.search_runs([experiment_id], filter_string=f"tags.{SWEEP_TAG} = '{benchmark}'",
                               max_results=1, order_by=["attributes.start_time ASC"])
    if found or not create:
        return found[0].info.run_id if found else None
    run_id = client.create_run(experiment_id, run_name=f"{benchmark} · sweep", tags={SWEEP_TAG: benchmark}).info.run_id
    client.set_terminated(run_id, "FINISHED")
    return run_id


def open_sweep(uri: str, experiment: str, benchmark: str, description: str | None = None, files=()) -> str:
    """The benchmark's parent run (``sweep_run``), created if missing, with ``files`` (tables, figures) logged
    as its artifacts; return its id. ``description`` (the benchmark's) describes the experiment and the
    parent run in the UI; the experiment gets the saved view ``CELL_VIEW``. Raises MlflowException /
    OSError when the store cannot be reached.
    """
    experiment_id = ensure_experiment(uri, experiment, description)
    client = MlflowClient(tracking_uri=uri)
    client.set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{CELL_VIEW}", json.dumps(CELL_VIEW_STATE))
    with store_lock(uri):
        run_id = sweep_run(client, experiment_id, benchmark)
    if description:
        client.set_tag(run_id, DESCRIPTION_TAG, description)
    for path in files:
        client.log_artifact(run_id, str(path))
    return run_id


MARKER_ENV = "SRLIB_TRACKING_MARKER"


def write_marker(path, uri: str, experiment: str, experiment_id: str, benchmark: str = "",
                 parent_run_id: str = "") -> None:
    """The file ``srlib init-tracking --marker`` writes once the store, experiment and parent run exist:
    one line each for the URI, experiment name, experiment id, benchmark name and parent run id."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{value}\n" for value in (uri, experiment, experiment_id, benchmark, parent_run_id)))


def read_marker(uri: str, experiment: str) -> dict:
    """The ids in the marker ``$SRLIB_TRACKING_MARKER`` names when it is for ``uri`` and ``experiment``
    ({"experiment_id", "benchmark", "parent_run_id"}), else {} (no marker, another store, unreadable)."""
    path = os.environ.get(MARKER_ENV)
    try:
        lines = Path(path).read_text().splitlines() if path else []
    except OSError:
        return {}
    if len(lines) < 3 or lines[0] != uri or lines[1] != experiment or not lines[2]:
        return {}
    lines += [""] * (5 - len(lines))
    return {"experiment_id": lines[2], "benchmark": lines[3], "parent_run_id": lines[4] or None}
