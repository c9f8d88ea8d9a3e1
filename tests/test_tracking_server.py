"""An MLflow tracking server as the sweep's store: workflow/scripts/tracking_server.py starts a local
`mlflow server`, runs a command against it (the workflow's tracking set-up, then 8 training jobs opening,
logging and finishing runs at the same moment) and stops it; every run and artifact is in its store."""

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from srlib.config import DEFAULTS, flatten

pytestmark = pytest.mark.tracking_server

REPO = Path(__file__).resolve().parents[1]
N_RUNS = 8  # training jobs starting at once


def test_concurrent_runs_through_a_server_started_for_the_command(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store, marker = tmp_path / "mlflow.db", tmp_path / "marker.txt"
    command = (f'{sys.executable} -m srlib init-tracking --uri "$MLFLOW_TRACKING_URI" --experiment sweep '
               f'--marker {marker}'
               f' && {sys.executable} {REPO}/benchmarks/perf/tracking_latency.py --uri "$MLFLOW_TRACKING_URI" '
               f"--experiment sweep --runs {N_RUNS} && exit 3")
    script = subprocess.Popen([sys.executable, REPO / "workflow/scripts/tracking_server.py", "--store", store,
                               "--port", str(port), "--workers", "2", "--", "sh", "-c", command],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "MLFLOW_TRACKING_URI": ""})
    try:
        stdout, stderr = script.communicate(timeout=600)
    finally:
        script.terminate()  # on a timeout: SIGTERM, so the script stops its server (SIGKILL would orphan it)
        script.wait()
    assert script.returncode == 3, stdout + stderr  # the command's exit status
    uri = f"http://127.0.0.1:{port}"
    assert marker.read_text().splitlines()[:2] == [uri, "sweep"]  # the command got the server's URI
    assert f"| {uri} | {N_RUNS} |" in stdout and f"| {N_RUNS}/{N_RUNS} |" in stdout, stdout
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # the server stopped with the command

    # Every run reached the store whole, as a child of the benchmark's parent run: FINISHED, all params, the
    # metric, the artifact uploaded through the server.
    with sqlite3.connect(store) as db:
        runs = db.execute("SELECT r.run_uuid, r.experiment_id, r.status FROM runs r JOIN experiments e "
                          "ON r.experiment_id = e.experiment_id JOIN tags t ON t.run_uuid = r.run_uuid "
                          "AND t.key = 'mlflow.parentRunId' WHERE e.name = 'sweep'").fetchall()
        params = dict(db.execute("SELECT run_uuid, COUNT(*) FROM params GROUP BY run_uuid").fetchall())
        losses = dict(db.execute("SELECT run_uuid, value FROM latest_metrics WHERE key = 'loss'").fetchall())
    assert len(runs) == N_RUNS and {status for _, _, status in runs} == {"FINISHED"}
    for run_id, experiment_id, _ in runs:
        assert params[run_id] == len(flatten(DEFAULTS)) and losses[run_id] == 1.0
        artifact = tmp_path / "mlartifacts" / str(experiment_id) / run_id / "artifacts" / "run.json"
        assert json.loads(artifact.read_text())["run"].startswith("run-")
