"""MLflow tracking: store set-up, run logging, fail-soft behaviour, concurrency and late import."""

import json
import multiprocessing
import re
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from srlib import tracking
from srlib.config import TRACKING_DB_NAME, tracking_uri


@pytest.fixture(scope="session")
def template_db(tmp_path_factory):
    """A store with its tables created once per session (creating tables takes seconds)."""
    uri = tracking_uri(None, tmp_path_factory.mktemp("template"))
    tracking.ensure_experiment(uri, "template")
    return tracking._sqlite_path(uri)


@pytest.fixture
def uri(template_db, tmp_path):
    """URI of a fresh copy of the template store in this test's folder."""
    shutil.copy(template_db, tmp_path / TRACKING_DB_NAME)
    return tracking_uri(None, tmp_path)


def runs_of(uri, experiment):
    client = MlflowClient(tracking_uri=uri)
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def test_tracking_uri_resolution_order(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(None, tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert tracking_uri(None, tmp_path) == "http://tracking:5000"
    assert tracking_uri("http://other:5000", tmp_path) == "http://other:5000"


def test_ensure_experiment_creates_store_once(tmp_path):
    uri = tracking_uri(None, tmp_path / "results")
    first = tracking.ensure_experiment(uri, "bench")
    assert tracking.ensure_experiment(uri, "bench") == first
    experiments = MlflowClient(tracking_uri=uri).search_experiments(filter_string="name = 'bench'")
    assert [e.experiment_id for e in experiments] == [first]
    assert experiments[0].artifact_location == (tmp_path / "results" / "mlruns").resolve().as_uri()


def test_run_logs_flat_params_metrics_per_step_tags_and_artifacts(uri, tmp_path):
    config = {"model": {"backbone": "resnet18", "exits": [1, 2]}, "lr": 0.01}
    tags = tracking.run_tags("abc123", device="cpu", threads=1)
    with tracking.open_run(uri, "bench", "run-a", config, tags) as tracker:
        assert tracker.active
        for step, loss in enumerate([1.0, 0.5, 0.25]):
            tracker.log_metrics({"loss/total": loss, "lr": 0.01}, step)
        tracker.log_dict({"iou": [0.5, 0.7]}, "per_class.json")
        (tmp_path / "grid.png").write_bytes(b"png")
        tracker.log_artifact(tmp_path / "grid.png", "pictures")
        run_id = tracker.run_id

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"model.backbone": "resnet18", "model.exits": "[1, 2]", "lr": "0.01"}
    history = client.get_metric_history(run_id, "loss/total")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, 0.25)]
    assert run.data.tags["config_hash"] == "abc123"
    assert re.fullmatch("[0-9a-f]{40}", run.data.tags["git_commit"])
    assert run.data.tags["git_dirty"] in ("true", "false")
    assert {"torch_version", "timm_version", "srlib_version", "mlflow_version"} <= run.data.tags.keys()
    assert (run.data.tags["device"], run.data.tags["threads"]) == ("cpu", "1")
    artifacts = {a.path for folder in (None, "pictures") for a in client.list_artifacts(run_id, folder)}
    assert {"per_class.json", "pictures/grid.png"} <= artifacts


def test_exception_in_block_marks_run_failed(uri):
    with pytest.raises(FloatingPointError):
        with tracking.open_run(uri, "bench", "run-b", {}, {}) as tracker:
            raise FloatingPointError("loss is nan at iteration 3")
    assert [r.info.status for r in runs_of(uri, "bench")] == ["FAILED"]


def test_bad_metric_value_and_status_are_rejected(uri):
    tracker = tracking.open_run(uri, "bench", "run-c", {}, {})
    with pytest.raises(ValueError, match="'per_class'"):
        tracker.log_metrics({"per_class": [0.1, 0.2]}, 0)
    with pytest.raises(ValueError, match="FINISHED"):
        tracker.finish("DONE")


def test_resume_continues_the_same_run(uri):
    first = tracking.open_run(uri, "bench", "run-d", {"lr": 0.1}, {})
    first.log_metrics({"loss": 1.0}, 0)  # then the job is killed: the run stays RUNNING
    resumed = tracking.open_run(uri, "bench", "run-d", {"lr": 0.1}, {}, run_id=first.run_id)
    resumed.log_metrics({"loss": 0.5}, 1)
    resumed.finish()
    (run,) = runs_of(uri, "bench")
    assert (run.info.run_id, run.info.status) == (first.run_id, "FINISHED")


def closed_port_uri():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("kind", ["sqlite under a file", "http closed port"])
def test_unreachable_store_warns_once_and_becomes_noop(kind, tmp_path, capsys, caplog):
    (tmp_path / "file").write_text("not a folder")
    uri = f"sqlite:///{tmp_path}/file/results/mlflow.db" if kind.startswith("sqlite") else closed_port_uri()
    start = time.monotonic()
    tracker = tracking.open_run(uri, "bench", "run", {"lr": 0.1}, {"config_hash": "x"})
    assert time.monotonic() - start < 10
    assert not tracker.active
    tracker.log_metrics({"loss": 1.0}, 0)
    tracker.log_dict({"a": 1}, "a.json")
    tracker.finish("FINISHED")
    assert [r.levelname for r in caplog.records if r.name == "srlib.tracking"] == ["WARNING"]
    stderr = capsys.readouterr().err
    assert stderr.count("WARNING: MLflow tracking store") == 1 and uri in stderr


def test_failure_mid_run_warns_once_and_training_continues(uri, caplog):
    tracker = tracking.open_run(uri, "bench", "run-e", {}, {})

    def store_down(*args, **kwargs):
        raise MlflowException("database is locked")

    tracker.client.log_batch = store_down
    tracker.log_metrics({"loss": 1.0}, 0)
    tracker.log_metrics({"loss": 0.9}, 1)
    tracker.finish()
    assert not tracker.active
    warnings = [r.getMessage() for r in caplog.records if r.name == "srlib.tracking"]
    assert len(warnings) == 1 and "database is locked" in warnings[0]


def test_run_tags_outside_a_checkout_say_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "__file__", str(tmp_path / "tracking.py"))
    tags = tracking.run_tags("h", device="cuda:0", threads=4)
    assert (tags["git_commit"], tags["git_dirty"], tags["threads"]) == ("unknown", "unknown", "4")


def log_from_worker(uri: str, worker: int) -> None:
    """Body of one sweep job: exit code 0 only if every tracking call reached the store."""
    tracker = tracking.open_run(uri, "bench", f"worker-{worker}", {"seed": worker}, {"config_hash": str(worker)})
    for step in range(5):
        tracker.log_metrics({"loss": 1.0 / (step + 1)}, step)
    logged = tracker.active  # False if opening or any logging call failed
    tracker.finish()
    sys.exit(0 if logged else 1)


def test_four_processes_log_into_one_sqlite_store(uri):
    # The store exists (tables created) but not the experiment: the workers also race to create it.
    # Forked workers skip re-importing MLflow; this process has not opened this store, so no
    # connection is inherited.
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=log_from_worker, args=(uri, i)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0] * 4
    runs = runs_of(uri, "bench")
    assert sorted(r.data.tags["config_hash"] for r in runs) == ["0", "1", "2", "3"]
    assert {r.info.status for r in runs} == {"FINISHED"}
    client = MlflowClient(tracking_uri=uri)
    assert all(len(client.get_metric_history(r.info.run_id, "loss")) == 5 for r in runs)


def write_run(run_dir: Path, config_hash: str, config_in_json: bool) -> None:
    run_dir.mkdir(parents=True)
    config = {"train": {"lr": 0.01, "iters": 20}, "sr": {"mea": True}}
    record = {
        "config_hash": config_hash,
        "metrics": {"miou": 0.5, "per_class_iou": [0.9, 0.1], "small_part": None},
        "cost": {"params_inference": 1000, "flops_inference": 2e6},
        "status": "FINISHED",
        "tags": {"device": "cpu"},
    }
    if config_in_json:
        record["config"] = config
    else:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "metrics.json").write_text(json.dumps(record))


def test_import_runs_imports_finished_runs_once(uri, tmp_path):
    write_run(tmp_path / "runs" / "a", "hash-a", config_in_json=True)
    write_run(tmp_path / "runs" / "b", "hash-b", config_in_json=False)
    (tmp_path / "runs" / "still-training").mkdir()
    dirs = sorted((tmp_path / "runs").iterdir())

    assert tracking.import_runs(dirs, uri, "bench") == {"imported": 2, "skipped": 0, "missing": 1}
    assert tracking.import_runs(dirs, uri, "bench") == {"imported": 0, "skipped": 2, "missing": 1}

    runs = {r.data.tags["config_hash"]: r for r in runs_of(uri, "bench")}
    assert sorted(runs) == ["hash-a", "hash-b"]
    client = MlflowClient(tracking_uri=uri)
    for run in runs.values():
        assert run.info.status == "FINISHED"
        assert run.data.params == {"train.lr": "0.01", "train.iters": "20", "sr.mea": "True"}
        assert run.data.metrics == {"miou": 0.5, "cost.params_inference": 1000, "cost.flops_inference": 2e6}
        assert run.data.tags["device"] == "cpu"
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"metrics.json", "metrics"} <= artifacts
        assert "metrics/per_class_iou.json" in {a.path for a in client.list_artifacts(run.info.run_id, "metrics")}


def test_import_skips_a_run_tracked_live(uri, tmp_path):
    write_run(tmp_path / "a", "hash-a", config_in_json=True)
    tracking.open_run(uri, "bench", "a", {}, {"config_hash": "hash-a"}).finish()
    assert tracking.import_runs([tmp_path / "a"], uri, "bench")["skipped"] == 1


def test_import_runs_rejects_a_missing_directory(uri, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        tracking.import_runs([tmp_path / "nope"], uri, "bench")


def test_import_runs_rejects_metrics_json_without_config_hash(uri, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "metrics.json").write_text(json.dumps({"metrics": {"miou": 0.5}}))
    with pytest.raises(ValueError, match="metrics.json has no 'config_hash'"):
        tracking.import_runs([tmp_path / "a"], uri, "bench")
