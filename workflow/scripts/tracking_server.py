"""An MLflow tracking server for one sweep: start it, run a command against it, stop it.

    python workflow/scripts/tracking_server.py --store results/mlflow.db [--host 0.0.0.0] [--port 5000] \
        -- snakemake --workflow-profile profiles/slurm --configfile benchmarks/paper.yaml ...

Starts ``mlflow server`` on this machine (the submit host) with the SQLite file ``--store`` as its backend store
and ``<store dir>/mlartifacts`` for artifacts (clients upload them through the server, so compute nodes need no
shared artifact folder), waits until it answers, runs the command with ``MLFLOW_TRACKING_URI`` set to the
server's URL (the workflow bakes it into every run's config), and stops the server when the command ends (or
on SIGINT, SIGTERM, SIGHUP). Exit status: the command's. Only the server touches the SQLite file, so hundreds
of jobs never queue on its lock.

``--host 0.0.0.0`` listens on every interface and advertises this machine's fully qualified name to the jobs;
the default 127.0.0.1 serves this machine only (a workstation, a one-node SLURM). Written for MLflow 3's
uvicorn server (``--allowed-hosts``, ``--uvicorn-opts``); tested with MLflow 3.17.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

READY_TIMEOUT_S = 300  # a loaded machine needs minutes to import the server
WARM_S = 1.0  # a warm worker answers a look-up well within this
HEALTHCHECK_S = 120


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(store: Path, host: str, port: int, workers: int) -> tuple[list[str], str]:
    """The ``mlflow server`` argv for SQLite file ``store`` and the tracking URI clients should use."""
    name = "127.0.0.1" if host == "127.0.0.1" else socket.getfqdn()
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{store.resolve()}",
        "--artifacts-destination", str(store.resolve().parent / "mlartifacts"),
        "--host", host, "--port", str(port), "--workers", str(workers),
        # MLflow rejects Host headers other than localhost / private IPs unless they are allowed.
        "--allowed-hosts", f"{name},{name}:{port},localhost,localhost:*,127.0.0.1,127.0.0.1:*",
        # uvicorn restarts a worker that does not answer its health check within 5 s; on a loaded machine a
        # worker still importing MLflow takes longer, and the restarts never end.
        "--uvicorn-opts", f"--timeout-worker-healthcheck {HEALTHCHECK_S}",
    ]
    return command, f"http://{name}:{port}"


def wait_ready(uri: str, process: subprocess.Popen, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Block until ``uri``/health answers; RuntimeError if the server exits or stays silent for ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with status {process.returncode} before answering at {uri}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=10) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"mlflow server did not answer at {uri}/health within {timeout_s:.0f} s")


def warm_up(uri: str, workers: int, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Send rounds of ``2 * workers`` concurrent API requests until a whole round answers within WARM_S each.

    Each server worker opens the backend store on its first request, which takes seconds; without this the
    first training jobs would wait for it (and give up after srlib.tracking's short start-up timeout).
    """
    url = f"{uri}/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"

    def timed_get(_) -> float:
        begin = time.monotonic()
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            response.read()
        return time.monotonic() - begin

    deadline = time.monotonic() + timeout_s
    with ThreadPoolExecutor(2 * workers) as pool:
        while max(pool.map(timed_get, range(2 * workers))) > WARM_S:
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server at {uri} still slow to answer after {timeout_s:.0f} s")


def start(store: Path, host: str = "127.0.0.1", port: int = 0, workers: int = 4, log=None):
    """Start the server (``port`` 0: a free one), wait until all its workers answer; return (process, tracking URI).

    Server output goes to ``log`` (an open file) or is discarded. Stop it with ``stop(process)``.
    """
    store.parent.mkdir(parents=True, exist_ok=True)
    command, uri = server_command(store, host, port or free_port(), workers)
    process = subprocess.Popen(command, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        wait_ready(uri, process)
        warm_up(uri, workers)
    except BaseException:
        stop(process)
        raise
    return process, uri


def stop(process: subprocess.Popen) -> None:
    """Terminate the server and its workers (its process group); kill them after 10 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _exit(signum, _frame):
    raise SystemExit(128 + signum)  # so that `finally` stops the server (it runs in a session of its own)


def main(argv: list[str]) -> int:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit)
    if "--" not in argv:
        raise SystemExit("usage: tracking_server.py --store FILE.db [--host H] [--port P] -- COMMAND [ARGS...]")
    split = argv.index("--")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True, help="SQLite file of the backend store")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: all)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=4, help="server worker processes")
    parser.add_argument("--log", type=Path, help="server log file (default: <store>.server.log)")
    args = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    if not command:
        raise SystemExit("tracking_server.py: no command after --")
    log_path = args.log or args.store.with_name(args.store.name + ".server.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        process, uri = start(args.store, args.host, args.port, args.workers, log)
        print(f"tracking_server: MLflow server at {uri} (store {args.store}, log {log_path})", file=sys.stderr)
        try:
            return subprocess.run(command, env={**os.environ, "MLFLOW_TRACKING_URI": uri}).returncode
        finally:
            stop(process)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
