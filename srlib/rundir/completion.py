"""What a finished run still owes, and the refusal of another config's results.

``saved_record`` finds what the run directory holds for a run about to train: its finished record (nothing to
train), a checkpoint to resume from, or another config's or data's record or checkpoint (refused, naming what
differs; a finished result is never overwritten). ``complete`` does what follows ``metrics.json``: the MLflow run's
summary, artifacts and FINISHED status, then the checkpoint's removal; a rerun of a finished run repeats it safely,
so a run killed at any instant is finished by its rerun, never retrained or logged twice.
"""

import shutil
from pathlib import Path

from srlib.config import ConfigError
from srlib.files import kill_point, read_json
from srlib.rundir import checkpoint
from srlib.rundir.layout import CHECKPOINT_DIR, METRICS_FILE
from srlib.rundir.mlflow_run import log_finished_run, open_tracker, read_run_id
from srlib.rundir.record import difference, same_run


def saved_record(run) -> dict | None:
    """The finished record of ``run``'s config and data in its run directory, or None; keeps the checkpoint to
    resume from in ``run.resume_state`` (``run``: a ``srlib.train.Run``). ConfigError naming what differs
    (``srlib.rundir.record.difference``) when the directory holds a finished run or a checkpoint of another config
    or data (neither is ever overwritten)."""
    metrics = run.out_dir / METRICS_FILE
    if metrics.exists():
        done = read_json(metrics)
        if same_run(done, run.hash, run.data_fingerprint):
            return done
        raise ConfigError(
            f"{metrics} is a finished run of another config or data "
            f"({difference(done, run.cfg, run.hash, run.data_fingerprint)}). A finished result is never "
            f"overwritten: use another --out directory, or move {run.out_dir} away to train it again"
        )
    if run.ckpt_path.exists():
        saved = checkpoint.read(run.ckpt_path)
        if not same_run(saved, run.hash, run.data_fingerprint):
            raise ConfigError(
                f"checkpoint {run.ckpt_path} was written by another config or data "
                f"({difference(saved, run.cfg, run.hash, run.data_fingerprint)}); "
                "delete the checkpoint or use another --out directory"
            )
        run.resume_state = saved
    return None


def complete(cfg: dict, out_dir: Path, record: dict, tracker=None) -> None:
    """What follows ``metrics.json``: the MLflow run's summary, artifacts and FINISHED status, then the
    checkpoint's removal. Idempotent (metric points carry the record's timestamp, so MLflow keeps one copy);
    with ``tracker=None`` it continues the MLflow run whose id the checkpoint folder kept, if any."""
    folder = out_dir / CHECKPOINT_DIR
    if tracker is None:
        if not folder.exists():
            return  # completed before
        if cfg["tracking"]["enabled"] and read_run_id(out_dir) is not None:
            tracker = open_tracker(cfg, out_dir, record["tags"])  # the tags the run was opened with
    if tracker is not None:
        log_finished_run(tracker, out_dir, record)
    kill_point("tracking-finished")
    shutil.rmtree(folder, ignore_errors=True)  # finished: metrics.json is the record
    kill_point("checkpoint-removed")
