"""General file I/O: JSON and YAML read with errors naming the file, files replaced atomically and durably, and the
named points where tests kill the process (``kill_point``).

Used for run records, outcomes, cost files, benchmark files and checkpoints alike; nothing here knows what a run is.
"""

import json
import os
import signal
import tempfile
from pathlib import Path

import yaml

from srlib.config import yaml_problem

KILL_ENV = "SRLIB_KILL_AT"  # tests: the name of the point where the process SIGKILLs itself


def read_json(path: str | Path) -> dict:
    """A JSON file (record, outcome or cost file); ValueError naming the file when it is not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping file (a run's config.yaml or run.yaml, a benchmark file); {} when empty. ValueError naming
    the file when it is not valid YAML or not a mapping."""
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {yaml_problem(error)}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping of keys, got a {type(loaded).__name__}")
    return loaded or {}


def write_json_atomic(path: str | Path, data) -> None:
    """Write JSON to a temporary file in the same directory, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600: collaborators must be able to read results
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, allow_nan=True)
            handle.flush()
            os.fsync(handle.fileno())
        kill_point(f"temp-written:{path.name}")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def replace_durably(path: Path, write) -> None:
    """``write(tmp)`` a sibling temporary file, fsync it, rename it over ``path`` and fsync the folder: after
    a crash ``path`` holds either the old or the new content, never a torn or empty file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def kill_point(name: str) -> None:
    """SIGKILL this process here when the environment variable SRLIB_KILL_AT equals ``name`` (tests use it
    to stop a run at an exact instant; unset in normal use)."""
    if os.environ.get(KILL_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
