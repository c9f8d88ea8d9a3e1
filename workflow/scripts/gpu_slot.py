"""Run a command on GPUs that no other job on this machine holds.

    python gpu_slot.py N -- COMMAND [ARGS...]

N is the job's ``gpu`` resource. The command is exec'd with CUDA_VISIBLE_DEVICES set:

- N == 0: to "" (a job that reserved no GPU sees none, so it cannot take one by accident);
- under SLURM (SLURM_JOB_ID set): left as SLURM set it for the job's allocation;
- otherwise: to N ids from the pool (this process's CUDA_VISIBLE_DEVICES if set, else every GPU
  ``nvidia-smi`` lists), each held by an exclusive ``flock`` on ``<lock dir>/gpu<id>.lock`` for the life of
  the command. A job waits while fewer than N GPUs are free, so two jobs never share a GPU even when
  more GPU jobs start than there are GPUs. ``snakemake --resources gpu=N`` keeps the scheduler from
  starting more GPU jobs than GPUs (waiting jobs would otherwise hold CPU cores idle).

Lock dir: $SRBENCH_GPU_LOCK_DIR, default <tmp>/srbench-gpu-locks-<uid> (one per user and machine).
"""

import fcntl
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POLL_S = 2.0


def gpu_pool() -> list[str]:
    """GPU ids this process may use: its CUDA_VISIBLE_DEVICES, else nvidia-smi's list, else none."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [gpu for gpu in visible.split(",") if gpu.strip()]
    try:
        listing = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listing.splitlines() if line.strip()]


def lock_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"srbench-gpu-locks-{os.getuid()}"
    path = Path(os.environ.get("SRBENCH_GPU_LOCK_DIR", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def acquire(count: int, pool: list[str], directory: Path, poll_s: float = POLL_S) -> tuple[list[str], list[int]]:
    """Block until ``count`` GPUs of ``pool`` are free; return their ids and the open lock descriptors.

    The locks last as long as the descriptors stay open (in this process or the exec'd command).
    """
    if count > len(pool):
        raise SystemExit(
            f"gpu_slot: the job asks for {count} GPU(s) but only {len(pool)} are visible "
            f"({','.join(pool) or 'none'}); lower the rule's gpu resource or set CUDA_VISIBLE_DEVICES"
        )
    while True:
        held, fds = [], []
        for gpu in pool:
            fd = os.open(directory / f"gpu{gpu}.lock", os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            held.append(gpu)
            fds.append(fd)
            if len(held) == count:
                return held, fds
        for fd in fds:  # not enough free: release what we took so others can progress, then retry
            os.close(fd)
        time.sleep(poll_s)


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        raise SystemExit("usage: gpu_slot.py N -- COMMAND [ARGS...]")
    count, command = int(argv[0]), argv[2:]
    env = dict(os.environ)
    if count == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""
    elif "SLURM_JOB_ID" not in env:
        gpus, fds = acquire(count, gpu_pool(), lock_dir())
        for fd in fds:
            os.set_inheritable(fd, True)  # the command inherits the locks; they go when it exits
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    if count:
        where = f"SLURM job {env['SLURM_JOB_ID']}: " if "SLURM_JOB_ID" in env else ""
        visible = env.get("CUDA_VISIBLE_DEVICES", "")
        print(f"gpu_slot: {where}CUDA_VISIBLE_DEVICES={visible}", file=sys.stderr, flush=True)
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    main(sys.argv[1:])
