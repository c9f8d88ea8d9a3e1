"""Orphan MLflow runs left by ``kill -9`` while a run opens its MLflow run.

    python benchmarks/perf/kill_window.py [--trials 20] [--seed 0]

The window: from the moment MLflow has created the run (``MlflowClient.create_run`` returned) until
``srlib.rundir.mlflow_run.open_tracker`` returns, the stretch in which the run's params are logged and its id is saved
beside the checkpoint. Each trial starts ``srlib run`` on a tiny config (32 px generated data, 2 iterations,
SQLite store, its own experiment) in a process whose ``create_run`` starts a timer; the timer SIGKILLs the
process a random delay later, uniform over 1.2 times the window measured by an unkilled run, and notes whether
``open_tracker`` had returned by then (a kill in the window) or not. The same ``srlib run`` is then run again to
the end, and the trial's MLflow runs are counted: an orphan is a run still RUNNING. Prints kills, kills in the
window, orphan runs left and trials whose experiment holds more than one run. Runs on the srlib that
``import srlib`` finds (put another checkout first on ``PYTHONPATH`` to measure it).
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

# The killed process: srlib's command line, with a timer started when MLflow creates the run.
CHILD = """
import os, signal, sys, threading, time
from mlflow import MlflowClient
import srlib.rundir.mlflow_run
from srlib.cli import main

delay_s, state = float(sys.argv[1]), sys.argv[2]
opened = threading.Event()
create_run, open_tracker = MlflowClient.create_run, srlib.rundir.mlflow_run.open_tracker

def kill_later(created):
    time.sleep(delay_s) if delay_s >= 0 else opened.wait()
    with open(state, "w") as handle:
        handle.write(f"{'after' if opened.is_set() else 'window'} {time.perf_counter() - created:.4f}")
    if delay_s >= 0:
        os.kill(os.getpid(), signal.SIGKILL)

def timed_create_run(self, *args, **kwargs):
    run = create_run(self, *args, **kwargs)
    threading.Thread(target=kill_later, args=(time.perf_counter(),), daemon=True).start()
    return run

def noting_open_tracker(*args, **kwargs):
    tracker = open_tracker(*args, **kwargs)
    opened.set()
    return tracker

MlflowClient.create_run, srlib.rundir.mlflow_run.open_tracker = timed_create_run, noting_open_tracker
sys.exit(main(sys.argv[3:]))
"""


def tiny_config(work: Path, experiment: str) -> Path:
    """A 2-iteration run config on a 32 px generated dataset, tracked in ``work``/mlflow.db."""
    data = work / "data"
    if not data.exists():
        from srlib.data.synth import generate

        generate(data, seed=0, size=32, n_train=8, n_val=4, n_test=4)
    cfg = {"threads": 1, "device": "cpu",
           "data": {"root": str(data), "crop_size": 32, "batch_size": 2, "eval_batch_size": 4},
           "model": {"preset": "fcn_mobilenetv2_050", "exit": "light", "pretrained": None},
           "optim": {"iters": 2}, "run": {"ckpt_every": 2, "log_every": 1, "val_every": 0, "pictures": 0},
           "tracking": {"uri": f"sqlite:///{work / 'mlflow.db'}", "experiment": experiment}}
    path = work / f"{experiment}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def srlib_run(config: Path, out: Path, delay_s: float | None, state: Path) -> int:
    """``srlib run``; with ``delay_s`` in the timed child (-1: no kill, note when open_tracker returned)."""
    args = ["run", str(config), "--out", str(out)]
    command = [sys.executable, "-m", "srlib", *args] if delay_s is None else [
        sys.executable, "-c", CHILD, str(delay_s), str(state), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600).returncode


def mlflow_statuses(work: Path, experiment: str) -> list[str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else [run.info.status for run in client.search_runs([found.experiment_id])]


def trial(work: Path, index: int, delay_s: float) -> dict:
    """Kill one run ``delay_s`` after its MLflow run was created, rerun it to the end, count its MLflow runs."""
    experiment, state = f"trial-{index}", work / f"trial-{index}.state"
    config, out = tiny_config(work, experiment), work / f"run-{index}"
    killed = srlib_run(config, out, delay_s, state)
    where = state.read_text().split()[0] if state.exists() else "never created"
    rerun = srlib_run(config, out, None, state)
    statuses = mlflow_statuses(work, experiment)
    return {"delay_ms": round(1000 * delay_s, 1), "killed": killed == -9, "where": where, "rerun_rc": rerun,
            "runs": len(statuses), "orphans": statuses.count("RUNNING")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="kill-window-") as tmp:
        work = Path(tmp)
        state = work / "calibration.state"
        srlib_run(tiny_config(work, "calibration"), work / "calibration", -1, state)
        window_s = float(state.read_text().split()[1])
        print(f"srlib from {os.path.dirname(__import__('srlib').__file__)}; window {1000 * window_s:.1f} ms")
        results = [trial(work, i, rng.uniform(0, 1.2 * window_s)) for i in range(args.trials)]
    for result in results:
        print(json.dumps(result))
    in_window = [r for r in results if r["killed"] and r["where"] == "window"]
    print(f"kills {sum(r['killed'] for r in results)}, in the window {len(in_window)}, "
          f"orphan runs left {sum(r['orphans'] for r in results)} ({sum(r['orphans'] for r in in_window)} after "
          f"kills in the window), trials with more than one MLflow run {sum(r['runs'] > 1 for r in results)}, "
          f"reruns failed {sum(r['rerun_rc'] != 0 for r in results)}")


if __name__ == "__main__":
    main()
