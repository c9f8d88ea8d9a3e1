"""The tags naming where a run's result comes from: code version (git commit, dirty flag, package versions), config
hash, device, threads and CPU. They go into ``metrics.json`` whether or not the run is tracked, so this module
imports neither torch nor MLflow (the caller passes torch's CPU capability).
"""

import importlib.metadata
import platform
import subprocess
from pathlib import Path

from srlib.config import CONFIG_HASH


def _git(*args: str) -> str | None:
    """stdout of a git command run in srlib's source folder, or None outside a checkout."""
    try:
        result = subprocess.run(
            ["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_tags(config_hash: str, device: str, threads: int, cpu_capability: str) -> dict[str, str]:
    """Standard run tags: code version (git commit and dirty flag of srlib's checkout, "unknown" outside
    one), config hash, torch / timm / srlib / mlflow versions, device, CPU thread count, CPU model and
    ``cpu_capability`` (``torch.backends.cpu.get_cpu_capability()``: the ISA level torch's kernels use).

    The dirty flag counts modified tracked files only: untracked outputs (results/) do not change the code.
    """
    commit = _git("rev-parse", "HEAD") or "unknown"
    status = _git("status", "--porcelain", "--untracked-files=no")
    tags = {
        "git_commit": commit,
        "mlflow.source.git.commit": commit,
        "git_dirty": "unknown" if status is None else str(bool(status)).lower(),
        CONFIG_HASH: config_hash,
        "device": device,
        "threads": str(threads),
        # CPU results are bitwise repeatable only on the same kernels: name the CPU and torch's ISA level.
        "cpu_model": _cpu_model(),
        "cpu_capability": cpu_capability,
    }
    for package in ("torch", "timm", "srlib", "mlflow"):
        tags[f"{package}_version"] = _version(package)
    return tags
