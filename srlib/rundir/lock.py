"""One process at a time in a run directory.

``lock(run_dir)`` holds an exclusive ``fcntl.flock`` on ``RUN_DIR/.lock`` (which records the holder's PID
and host) while a process trains, finishes or completes a run there; a second process gets ``RunDirBusy``
naming the directory and the holder, before it touches anything else. The lock is released by the kernel
when the holder exits, however it exits, so a killed run never leaves a stale lock. (On network
filesystems flock is as reliable as the filesystem's lock support: NFSv4 and Lustre with ``flock`` mounts
honour it.)
"""

import contextlib
import fcntl
import os
import socket
from pathlib import Path

from srlib.rundir.layout import CHECKPOINT_DIR, LOCK_FILE


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
    return [path for folder in (run_dir, run_dir / CHECKPOINT_DIR) for path in folder.glob(".*.tmp")]


def remove_stale_temps(run_dir: Path) -> None:
    """Delete ``stale_temps``; called by ``lock`` once it holds the lock (every write of such a file happens under
    the lock, so no live process is writing them)."""
    for path in stale_temps(run_dir):
        path.unlink(missing_ok=True)
