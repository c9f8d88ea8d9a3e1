"""MLflow ``open_run`` latency when N training jobs start at once: a tracking server against direct SQLite.

    python benchmarks/perf/tracking_latency.py [--runs 8 32] [--workers 4]
    python benchmarks/perf/tracking_latency.py --uri http://host:5000 --runs 32    # an existing server

For each N and each store, N processes import ``srlib.tracking.tracker`` (as a training job does), wait at a common
barrier, then each times ``srlib.tracking.tracker.open_run`` (run creation as a child of the benchmark's parent run,
the default run config as params), logs one metric batch and one JSON artifact (``run.json``) and finishes.
The experiment and parent run exist beforehand and the jobs read their ids from the marker, as after the
workflow's ``init_tracking``. Stores: a fresh ``sqlite:///`` file opened by
every process, and a fresh ``mlflow server`` (``workflow/scripts/tracking_server.py``, the same kind of SQLite
file behind it, ``--workers`` processes); ``--uri`` measures only the given store (run it where the jobs run).
Prints p50 / p95 / max of ``open_run`` in seconds per store and N. Each process holds torch and MLflow
(~350 MB), so N = 32 needs ~11 GB.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from importlib import util
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
BENCHMARK = "tracking_latency"  # the runs' benchmark tag: children of its parent run
# One training job's tracking start-up; the parent releases all children at once by writing to their stdin.
CHILD = """
import json, sys, time
from srlib.config import DEFAULTS
from srlib.tracking import tracker as tracking
uri, experiment, name = sys.argv[1:4]
print("ready", flush=True)
sys.stdin.readline()
start = time.perf_counter()
tracker = tracking.open_run(uri, experiment, name, DEFAULTS, {"benchmark": "tracking_latency"})
open_s = time.perf_counter() - start
active = tracker.active
tracker.log_metrics({"loss": 1.0}, 0)
tracker.log_dict({"run": name}, "run.json")
tracker.finish()
print(json.dumps({"open_s": open_s, "active": active, "total_s": time.perf_counter() - start}), flush=True)
"""


def tracking_server():
    """workflow/scripts/tracking_server.py as a module."""
    spec = util.spec_from_file_location("tracking_server", REPO / "workflow/scripts/tracking_server.py")
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def open_concurrently(uri: str, experiment: str, n: int) -> list[dict]:
    """Start ``n`` processes that open a run in ``experiment`` of ``uri`` at the same moment.

    Returns one dict per process: {"open_s": seconds in open_run, "active": whether the run opened (False:
    the store could not be reached and the tracker warned), "total_s": open + metric + artifact + finish}.
    Raises RuntimeError with a child's stderr if one crashes.
    """
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, uri, experiment, f"run-{i}"], cwd=REPO, text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for i in range(n)
    ]
    try:
        for child in children:  # all imported: the barrier
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError(f"tracking child failed before opening its run:\n{child.communicate()[1]}")
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        results = []
        for child in children:
            out, err = child.communicate(timeout=600)
            if child.returncode != 0:
                raise RuntimeError(f"tracking child exited with {child.returncode}:\n{err}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for child in children:
            child.kill()
            child.wait()


def summary(results: list[dict]) -> dict[str, float]:
    """p50 / p95 / max of open_s in seconds, and how many runs opened."""
    seconds = np.array([r["open_s"] for r in results])
    return {"p50": float(np.percentile(seconds, 50)), "p95": float(np.percentile(seconds, 95)),
            "max": float(seconds.max()), "opened": sum(r["active"] for r in results)}


def measure(uri: str, label: str, n: int, experiment: str) -> tuple[str, int, dict]:
    """(label, n, summary) of ``n`` concurrent runs opened in ``experiment`` of ``uri``. As in the workflow,
    ``init_tracking`` first creates the experiment and the benchmark's parent run and writes the marker
    whose ids the jobs use (``$SRLIB_TRACKING_MARKER``)."""
    from srlib.tracking.store import MARKER_ENV, ensure_experiment, open_sweep, write_marker

    experiment_id = ensure_experiment(uri, experiment)
    with tempfile.TemporaryDirectory() as tmp:
        marker = Path(tmp) / "mlflow_experiment.txt"
        write_marker(marker, uri, experiment, experiment_id, BENCHMARK, open_sweep(uri, experiment, BENCHMARK))
        os.environ[MARKER_ENV] = str(marker)
        row = (label, n, summary(open_concurrently(uri, experiment, n)))
    print(f"measured {label}, {n} concurrent runs", file=sys.stderr, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[8, 32], help="concurrent runs per measurement")
    parser.add_argument("--workers", type=int, default=4, help="mlflow server worker processes")
    parser.add_argument("--uri", help="measure only this store (e.g. your cluster's server), in --experiment")
    parser.add_argument("--experiment", default="latency", help="experiment of the runs with --uri")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    rows = []
    if args.uri:
        rows = [measure(args.uri, args.uri, n, args.experiment) for n in args.runs]
    else:
        server = tracking_server()
        with tempfile.TemporaryDirectory() as tmp:
            for n in args.runs:
                process, server_uri = server.start(Path(tmp) / f"server-{n}" / "mlflow.db", workers=args.workers)
                try:
                    rows.append(measure(server_uri, f"mlflow server ({args.workers} workers)", n, "latency"))
                finally:
                    server.stop(process)
                rows.append(measure(f"sqlite:///{Path(tmp) / f'direct-{n}' / 'mlflow.db'}", "direct SQLite", n,
                                    "latency"))
    print("| store | concurrent runs | open_run p50 | p95 | max | runs opened |")
    print("|---|---|---|---|---|---|")
    for store, n, s in rows:
        print(f"| {store} | {n} | {s['p50']:.2f} s | {s['p95']:.2f} s | {s['max']:.2f} s | {s['opened']}/{n} |")


if __name__ == "__main__":
    main()
