"""A run directory's MLflow run: its id and an opening marker kept beside the checkpoint, the tracker opened with
them, and a finished run's summary, files and status logged.

``checkpoint/mlflow_opening`` is written before a process first creates the run's MLflow run and
``checkpoint/mlflow_run_id`` as soon as the run exists; a rerun that finds the first without the second looks for
the RUNNING run of its identity (``srlib.tracking.tracker.open_run``), so a run killed in between is continued,
not duplicated.
"""

from pathlib import Path

from srlib.config import CONFIG_HASH, DATA_FINGERPRINT, tracking_uri
from srlib.files import replace_durably
from srlib.rundir.layout import CHECKPOINT_DIR, OPENING_FILE, RUN_ARTIFACTS, RUN_ID_FILE
from srlib.tracking.tracker import IDENTITY_TAG, RUN_DIR_TAG, Tracker, open_run, run_display, run_identity


def read_run_id(run_dir: Path) -> str | None:
    """The MLflow run id saved for this run directory; None when absent, empty or not an id."""
    path = Path(run_dir) / CHECKPOINT_DIR / RUN_ID_FILE
    try:
        text = path.read_text().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return text if text.isalnum() else None


def write_run_id(run_dir: Path, run_id: str) -> None:
    """Keep, durably, the id of the MLflow run this run directory's run logs to."""
    replace_durably(Path(run_dir) / CHECKPOINT_DIR / RUN_ID_FILE, lambda tmp: tmp.write_text(run_id))


def note_opening(run_dir: Path) -> bool:
    """Record, durably, that this run directory's process is about to create an MLflow run; return whether an
    earlier process did so (it may have been killed after creating the run and before its id was saved)."""
    path = Path(run_dir) / CHECKPOINT_DIR / OPENING_FILE
    if path.exists():
        return True
    replace_durably(path, lambda tmp: tmp.write_text(""))
    return False


def open_tracker(cfg: dict, out_dir: Path, tags: dict):
    """The run's MLflow run (``srlib.tracking.tracker.Tracker``), tagged with the run directory and its identity
    (``srlib.tracking.tracker.run_identity``). A resumed run continues the MLflow run it started (id kept beside the
    checkpoint as soon as the run exists); where an earlier process began opening one and left no id, the
    RUNNING run of this identity it created is continued instead of a second one."""
    tracking = cfg["tracking"]
    uri = tracking_uri(tracking["uri"])
    if not tracking["enabled"]:
        return Tracker(None, None, uri)
    name, cell_tags = run_display(cfg)  # short name and cell tags, the sweep's when it wrote them
    identity = run_identity(out_dir, tags[CONFIG_HASH], tags.get(DATA_FINGERPRINT))
    tags = {**tags, **cell_tags, RUN_DIR_TAG: str(out_dir.resolve()), IDENTITY_TAG: identity}
    return open_run(uri, tracking["experiment"], name, cfg, tags, run_id=read_run_id(out_dir),
                    adopt=note_opening(out_dir), keep_id=lambda run_id: write_run_id(out_dir, run_id))


def log_finished_run(tracker, out_dir: Path, record: dict) -> None:
    """A finished run's summary metrics, its files as artifacts and the FINISHED status."""
    tracker.log_summary(record, step=0, timestamp_ms=record["train"].get("finished_at_ms"))
    for name in RUN_ARTIFACTS:
        if (out_dir / name).exists():
            tracker.log_artifact(out_dir / name)
    tracker.finish("FINISHED")
