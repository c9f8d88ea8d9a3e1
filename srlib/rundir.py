"""The run directory's housekeeping: one process at a time, the MLflow run id kept beside the checkpoint,
files replaced atomically and durably, and named points where tests kill the process.

``checkpoint/mlflow_opening`` is written before a process first creates the run's MLflow run and
``checkpoint/mlflow_run_id`` as soon as the run exists; a rerun that finds the first without the second looks
for the RUNNING run of its identity (``srlib.tracking.open_run``). Kill points (``SRLIB_KILL_AT``) in the order a
run passes them: ``mlflow-run-created``, ``mlflow-run-id-kept``, ``step:<i>``, ``history-written:<i>``,
``checkpoint:<i>``, ``metrics-written``, ``tracking-finished``, ``checkpoint-removed``; and
``temp-written:<name>`` where ``metrics.json`` or ``outcome.json`` is written but not yet renamed into place.

``lock(run_dir)`` holds an exclusive ``fcntl.flock`` on ``RUN_DIR/.lock`` (which records the holder's PID
and host) while a process trains, finishes or completes a run there; a second process gets ``RunDirBusy``
naming the directory and the holder, before it touches anything else. The lock is released by the kernel
when the holder exits, however it exits, so a killed run never leaves a stale lock. (On network
filesystems flock is as reliable as the filesystem's lock support: NFSv4 and Lustre with ``flock`` mounts
honour it.)
"""

import contextlib
import os
import socket
from pathlib import Path

import fcntl

from srlib.files import replace_durably

LOCK_FILE = ".lock"
RUN_ID_FILE = "mlflow_run_id"  # in RUN_DIR/checkpoint/: the MLflow run a resumed or finishing run continues
OPENING_FILE = "mlflow_opening"  # in RUN_DIR/checkpoint/: a process began opening an MLflow run here


class RunDirBusy(RuntimeError):
    """Another live process holds the run directory's lock."""


class RunDirError(RuntimeError):
    """The run directory cannot be created or written (permissions, read-only filesystem)."""


@contextlib.contextmanager
def lock(run_dir: Path):
    """Create ``run_dir`` if needed and hold its lock for the block (stale temporary files removed first:
    ``remove_stale_temps``); RunDirBusy / RunDirError otherwise."""
    path = Path(run_dir) / LOCK_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        raise RunDirError(f"cannot write the run directory {run_dir}: {error.strerror or error}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise RunDirBusy(
                f"run directory {run_dir} is in use by process {holder} (it holds {path}); wait for it to end, "
                f"or stop it, before running here again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        remove_stale_temps(Path(run_dir))
        yield
    finally:
        os.close(fd)  # releases the lock


def stale_temps(run_dir: Path) -> list[Path]:
    """The temporary files (``.<name>.tmp``, ``.<name>.<random>.tmp``) in the run directory and its
    ``checkpoint/``: left by a process killed while replacing a file, when nobody holds the lock."""
    return [path for folder in (run_dir, run_dir / "checkpoint") for path in folder.glob(".*.tmp")]


def remove_stale_temps(run_dir: Path) -> None:
    """Delete ``stale_temps``; called by ``lock`` once it holds the lock (every write of such a file happens under
    the lock, so no live process is writing them)."""
    for path in stale_temps(run_dir):
        path.unlink(missing_ok=True)


def read_run_id(run_dir: Path) -> str | None:
    """The MLflow run id saved for this run directory; None when absent, empty or not an id."""
    path = Path(run_dir) / "checkpoint" / RUN_ID_FILE
    try:
        text = path.read_text().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return text if text.isalnum() else None


def write_run_id(run_dir: Path, run_id: str) -> None:
    replace_durably(Path(run_dir) / "checkpoint" / RUN_ID_FILE, lambda tmp: tmp.write_text(run_id))


def note_opening(run_dir: Path) -> bool:
    """Record, durably, that this run directory's process is about to create an MLflow run; return whether an
    earlier process did so (it may have been killed after creating the run and before its id was saved)."""
    path = Path(run_dir) / "checkpoint" / OPENING_FILE
    if path.exists():
        return True
    replace_durably(path, lambda tmp: tmp.write_text(""))
    return False
