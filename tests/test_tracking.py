"""MLflow tracking: store set-up, run logging, fail-soft behaviour, concurrency and late import."""

import json
import multiprocessing
import os
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

from srlib.sweep import run_configs
from srlib.tracking import provenance, store
from srlib.tracking import tracker as run_tracker
from srlib.config import DEFAULTS, TRACKING_DB_NAME, merge, tracking_uri
from srlib.rundir.importer import import_runs


@pytest.fixture(scope="session")
def template_db(tmp_path_factory):
    """A store with its tables created once per session (creating tables takes seconds)."""
    uri = tracking_uri(None, tmp_path_factory.mktemp("template"))
    store.ensure_experiment(uri, "template")
    return store._sqlite_path(uri)


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
    first = store.ensure_experiment(uri, "bench")
    assert store.ensure_experiment(uri, "bench") == first
    experiments = MlflowClient(tracking_uri=uri).search_experiments(filter_string="name = 'bench'")
    assert [e.experiment_id for e in experiments] == [first]
    assert experiments[0].artifact_location == (tmp_path / "results" / "mlruns").resolve().as_uri()


def test_run_logs_flat_params_metrics_per_step_tags_and_artifacts(uri, tmp_path):
    config = {"model": {"backbone": "resnet18", "exits": [1, 2]}, "lr": 0.01}
    tags = provenance.run_tags("abc123", device="cpu", threads=1, cpu_capability="default")
    with run_tracker.open_run(uri, "bench", "run-a", config, tags) as tracker:
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
        with run_tracker.open_run(uri, "bench", "run-b", {}, {}) as tracker:
            raise FloatingPointError("loss is nan at iteration 3")
    assert [r.info.status for r in runs_of(uri, "bench")] == ["FAILED"]


def test_bad_metric_value_and_status_are_rejected(uri):
    tracker = run_tracker.open_run(uri, "bench", "run-c", {}, {})
    with pytest.raises(ValueError, match="'per_class'"):
        tracker.log_metrics({"per_class": [0.1, 0.2]}, 0)
    with pytest.raises(ValueError, match="FINISHED"):
        tracker.finish("DONE")


def test_resume_continues_the_same_run(uri):
    first = run_tracker.open_run(uri, "bench", "run-d", {"lr": 0.1}, {})
    first.log_metrics({"loss": 1.0}, 0)  # then the job is killed: the run stays RUNNING
    resumed = run_tracker.open_run(uri, "bench", "run-d", {"lr": 0.1}, {}, run_id=first.run_id)
    resumed.log_metrics({"loss": 0.5}, 1)
    resumed.finish()
    (run,) = runs_of(uri, "bench")
    assert (run.info.run_id, run.info.status) == (first.run_id, "FINISHED")


def test_a_running_run_of_the_identity_is_continued_and_runs_passed_over_are_ended_killed(uri):
    identity = {run_tracker.IDENTITY_TAG: "0123456789abcdef", "config_hash": "abc"}
    orphan, later = (run_tracker.open_run(uri, "bench", "run", {"lr": 0.1}, identity).run_id for _ in range(2))
    kept = []
    adopted = run_tracker.open_run(uri, "bench", "run", {"lr": 0.1}, identity, adopt=True, keep_id=kept.append)
    assert adopted.run_id == orphan and kept == [orphan]  # the earliest; its id is kept
    fresh = run_tracker.open_run(uri, "bench", "run", {"lr": 0.2}, {"config_hash": "another"}, run_id=orphan)
    assert fresh.run_id not in (orphan, later)  # a saved run of another config is not continued
    statuses = {run.info.run_id: run.info.status for run in runs_of(uri, "bench")}
    assert statuses == {orphan: "KILLED", later: "KILLED", fresh.run_id: "RUNNING"}


def test_a_run_whose_params_fail_to_log_is_ended_killed_with_its_id_kept(uri, monkeypatch, caplog):
    log_batch = MlflowClient.log_batch

    def params_fail(self, run_id, metrics=(), params=(), tags=(), **kwargs):
        if params:
            raise MlflowException("database is locked")
        return log_batch(self, run_id, metrics, params, tags, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", params_fail)
    kept = []
    tracker = run_tracker.open_run(uri, "bench", "run", {"lr": 0.1}, {}, keep_id=kept.append)
    assert not tracker.active
    (run,) = runs_of(uri, "bench")
    assert run.info.status == "KILLED" and kept == [run.info.run_id]
    assert [r.levelname for r in caplog.records if r.name == "srlib.tracking"] == ["WARNING"]
    monkeypatch.setattr(MlflowClient, "log_batch", log_batch)
    resumed = run_tracker.open_run(uri, "bench", "run", {"lr": 0.1}, {}, run_id=run.info.run_id)
    assert resumed.run_id == run.info.run_id  # a rerun continues it, with its params this time
    assert MlflowClient(tracking_uri=uri).get_run(run.info.run_id).data.params == {"lr": "0.1"}


def closed_port_uri():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("kind", ["sqlite under a file", "http closed port"])
def test_unreachable_store_warns_once_and_becomes_noop(kind, tmp_path, caplog):
    (tmp_path / "file").write_text("not a folder")
    uri = f"sqlite:///{tmp_path}/file/results/mlflow.db" if kind.startswith("sqlite") else closed_port_uri()
    start = time.monotonic()
    tracker = run_tracker.open_run(uri, "bench", "run", {"lr": 0.1}, {"config_hash": "x"})
    assert time.monotonic() - start < 10
    assert not tracker.active
    tracker.log_metrics({"loss": 1.0}, 0)
    tracker.log_dict({"a": 1}, "a.json")
    tracker.finish("FINISHED")
    (warning,) = [r for r in caplog.records if r.name == "srlib.tracking"]
    assert warning.levelname == "WARNING" and uri in warning.getMessage()


def test_failure_mid_run_warns_once_and_training_continues(uri, caplog):
    tracker = run_tracker.open_run(uri, "bench", "run-e", {}, {})

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
    monkeypatch.setattr(provenance, "__file__", str(tmp_path / "provenance.py"))
    tags = provenance.run_tags("h", device="cuda:0", threads=4, cpu_capability="default")
    assert (tags["git_commit"], tags["git_dirty"], tags["threads"]) == ("unknown", "unknown", "4")


def log_from_worker(uri: str, worker: int) -> None:
    """Body of one sweep job: exit code 0 only if every tracking call reached the store."""
    tracker = run_tracker.open_run(uri, "bench", f"worker-{worker}", {"seed": worker}, {"config_hash": str(worker)})
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

    assert import_runs(dirs, uri, "bench") == {"imported": 2, "skipped": 0, "missing": 1}
    assert import_runs(dirs, uri, "bench") == {"imported": 0, "skipped": 2, "missing": 1}

    runs = {r.data.tags["config_hash"]: r for r in runs_of(uri, "bench")}
    assert sorted(runs) == ["hash-a", "hash-b"]
    client = MlflowClient(tracking_uri=uri)
    for run in runs.values():
        assert run.info.status == "FINISHED"
        assert run.data.params == {"train.lr": "0.01", "train.iters": "20", "sr.mea": "True"}
        assert run.data.metrics == {"val/miou_pct": 50.0, "cost/params_inference": 1000, "cost/flops_inference": 2e6}
        assert run.data.tags["device"] == "cpu"
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"metrics.json", "metrics"} <= artifacts
        assert "metrics/per_class_iou.json" in {a.path for a in client.list_artifacts(run.info.run_id, "metrics")}


def test_import_tells_runs_of_one_config_on_different_data_apart(uri, tmp_path):
    for name, data in (("voc", "0123456789abcdef"), ("voc-copy", "fedcba9876543210")):
        write_run(tmp_path / name, "hash-a", config_in_json=True)
        record = json.loads((tmp_path / name / "metrics.json").read_text())
        (tmp_path / name / "metrics.json").write_text(json.dumps({**record, "data_fingerprint": data}))
    assert import_runs([tmp_path / "voc", tmp_path / "voc-copy"], uri, "bench")["imported"] == 2
    assert import_runs([tmp_path / "voc", tmp_path / "voc-copy"], uri, "bench")["skipped"] == 2
    assert {r.data.tags["data_fingerprint"] for r in runs_of(uri, "bench")} == {"0123456789abcdef", "fedcba9876543210"}


def test_import_skips_a_run_tracked_live(uri, tmp_path):
    write_run(tmp_path / "a", "hash-a", config_in_json=True)
    run_tracker.open_run(uri, "bench", "a", {}, {"config_hash": "hash-a"}).finish()
    assert import_runs([tmp_path / "a"], uri, "bench")["skipped"] == 1


def test_import_runs_rejects_a_missing_directory(uri, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        import_runs([tmp_path / "nope"], uri, "bench")


def test_import_runs_rejects_metrics_json_without_config_hash(uri, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "metrics.json").write_text(json.dumps({"metrics": {"miou": 0.5}, "config": {}}))
    with pytest.raises(ValueError, match="metrics.json has no 'config_hash'"):
        import_runs([tmp_path / "a"], uri, "bench")


SWEEP = {"name": "bench", "base": {}, "datasets": {"generated": {"name": "generated", "root": "data", "label_dir": None,
                                                                 "config": {}}},
         "axes": {"dataset": ["generated"], "preset": ["tiny"], "pixel": ["ce", "focal"], "sr": ["baseline", "mea+srf"],
                  "seed": ["0", "1"]},
         "overrides": [], "resources": {"train": {"threads": 1}}, "tracking": {"enabled": True, "uri": None,
                                                                                "experiment": "bench"}}


def sweep_config(**run) -> dict:
    """A sweep run's resolved config (``srlib.sweep.run_configs.run_config`` over the defaults)."""
    return merge(DEFAULTS, run_configs.run_config(SWEEP, {"dataset": "generated", "preset": "tiny", **run}))


def record_of(cfg: dict, config_hash: str) -> dict:
    return {"status": "FINISHED", "config_hash": config_hash, "config": cfg, "classes": ["background", "cat"],
            "metrics": {"miou": 0.4, "iou_per_class": [0.7, 0.1]},
            "cost": {"step_time_s": 0.2, "memory_kind": "cpu_peak_rss", "flop_input_shape": [1, 3, 32, 32]},
            "train": {"finished_at_ms": 1_700_000_100_000}}


def test_sweep_runs_are_named_by_cell_tagged_and_children_of_the_benchmark_run(uri):
    store.open_sweep(uri, "bench", "bench", "A sweep for the test.")  # what init_tracking does
    for pixel, sr, seed in (("ce", "baseline", "0"), ("focal", "mea+srf", "1")):
        cfg = sweep_config(pixel=pixel, sr=sr, seed=seed)
        name, cell = run_tracker.run_display(cfg)
        with run_tracker.open_run(uri, "bench", name, cfg, {"config_hash": f"{pixel}-{sr}-{seed}", **cell}) as tracker:
            tracker.log_summary(record_of(cfg, "x"))
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("bench")
    assert experiment.tags["mlflow.note.content"] == "A sweep for the test."
    runs = {r.info.run_name: r for r in runs_of(uri, "bench")}
    assert sorted(runs) == ["bench · sweep", "ce · baseline · s0", "focal · mea+srf · s1"]  # pixel varies, preset not
    parent, child = runs["bench · sweep"], runs["focal · mea+srf · s1"]
    assert {k: child.data.tags[k] for k in ("benchmark", "dataset", "preset", "pixel", "sr", "seed")} == {
        "benchmark": "bench", "dataset": "generated", "preset": "tiny", "pixel": "focal", "sr": "mea+srf", "seed": "1"}
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert runs["ce · baseline · s0"].data.tags["mlflow.parentRunId"] == parent.info.run_id
    # End-of-run scores at step 0 (one bar per run), in percent like the tables; constant facts as tags.
    assert [(m.step, m.value) for m in client.get_metric_history(child.info.run_id, "val/miou_pct")] == [(0, 40.0)]
    assert child.data.metrics["cost/step_time_s"] == 0.2
    assert child.data.tags["cost.memory_kind"] == "peak resident memory of the training process (CPU)"
    assert child.data.tags["cost.flop_input_shape"] == "[1, 3, 32, 32]"


def test_an_imported_run_looks_like_the_live_run(uri, tmp_path):
    cfg = sweep_config(pixel="focal", sr="mea+srf", seed="1")
    run_dir = tmp_path / "runs" / "pixel~focal" / "sr~mea+srf" / "seed~1"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps(record_of(cfg, "h1")))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run_dir / "train.log").write_text("iter 1/2\n")
    points = [{"step": 1, "time_ms": 1_700_000_000_000, "metrics": {"loss/total": 2.0, "lr": 0.01}},
              {"step": 2, "time_ms": 1_700_000_001_000, "metrics": {"loss/total": 1.5, "lr": 0.005}}]
    (run_dir / "history.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))
    (tmp_path / "table.html").write_text("<p>ablation</p>")

    counts = import_runs([run_dir], uri, "bench", benchmark="bench", description="Imported.",
                         attach=[tmp_path / "table.html"])
    assert counts == {"imported": 1, "skipped": 0, "missing": 0}
    client = MlflowClient(tracking_uri=uri)
    runs = {r.info.run_name: r for r in runs_of(uri, "bench")}
    run, parent = runs["focal · mea+srf · s1"], runs["bench · sweep"]
    assert (run.data.tags["sr"], run.data.tags["benchmark"]) == ("mea+srf", "bench")
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    history = client.get_metric_history(run.info.run_id, "loss/total")
    assert [(m.step, m.value, m.timestamp) for m in history] == [(1, 2.0, 1_700_000_000_000),
                                                                  (2, 1.5, 1_700_000_001_000)]
    assert run.data.metrics["val/miou_pct"] == 40.0
    assert {"config.yaml", "train.log", "metrics.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["table.html"]
    assert client.get_experiment_by_name("bench").tags["mlflow.note.content"] == "Imported."


def test_records_without_run_names_are_named_by_the_axes_that_vary(uri, tmp_path):
    dirs = []
    for sr in ("baseline", "mea"):
        cfg = sweep_config(pixel="ce", sr=sr, seed="0")
        del cfg["tracking"]["run_name"], cfg["tracking"]["tags"]  # a record written before runs were named
        run_dir = tmp_path / "dataset~generated" / "preset~tiny" / "pixel~ce" / f"sr~{sr}" / "seed~0"
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.json").write_text(json.dumps(record_of(cfg, sr)))
        dirs.append(run_dir)
    import_runs(dirs, uri, "bench", benchmark="bench")
    assert sorted(r.info.run_name for r in runs_of(uri, "bench")) == ["baseline · s0", "bench · sweep", "mea · s0"]


def test_a_moved_store_finds_its_artifacts_again(tmp_path, caplog):
    uri = tracking_uri(None, tmp_path / "old" / "results")
    with run_tracker.open_run(uri, "bench", "a", {}, {}) as tracker:
        tracker.log_dict({"miou": 0.5}, "summary.json")
    shutil.move(tmp_path / "old", tmp_path / "new")
    moved = tracking_uri(None, tmp_path / "new" / "results")
    store.ensure_experiment(moved, "bench")
    assert "was moved" in caplog.text and str(tmp_path / "new" / "results" / "mlruns") in caplog.text
    client = MlflowClient(tracking_uri=moved)
    (run,) = runs_of(moved, "bench")
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["summary.json"]


def test_a_workflow_job_takes_the_ids_init_tracking_wrote_instead_of_looking_them_up(uri, tmp_path, monkeypatch):
    experiment_id = store.ensure_experiment(uri, "bench")
    parent = store.open_sweep(uri, "bench", "tiny")
    marker = tmp_path / "mlflow_experiment.txt"
    store.write_marker(marker, uri, "bench", experiment_id, "tiny", parent)
    monkeypatch.setenv(store.MARKER_ENV, str(marker))

    def no_lookups(*args, **kwargs):
        raise AssertionError("looked up what the marker says")

    monkeypatch.setattr(run_tracker, "ensure_experiment", no_lookups)
    monkeypatch.setattr(run_tracker, "sweep_run", no_lookups)
    run_tracker.open_run(uri, "bench", "a", {"lr": 0.1}, {"benchmark": "tiny"}).finish()
    (run,) = [r for r in runs_of(uri, "bench") if r.info.run_name == "a"]
    assert run.data.tags[run_tracker.PARENT_TAG] == parent
    assert store.read_marker("http://elsewhere:5000", "bench") == {}  # a marker of another store is ignored


def test_a_store_that_cannot_be_used_is_named_at_once(tmp_path):
    # import-runs and init-tracking check the store first: a dead server is refused in seconds (not after
    # MLflow's minutes of retries), a bare path is refused with the URI form it lacks.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: connections are refused
        start = time.monotonic()
        with pytest.raises(ValueError, match=f"tracking store '{dead}' cannot be used"):
            store.check_store(dead)
        assert time.monotonic() - start < 30
    with pytest.raises(ValueError, match=r"'mlruns-here' cannot be used \(a SQLite store is written sqlite:///"):
        store.check_store("mlruns-here")
    store.check_store(f"sqlite:///{tmp_path / 'new.db'}")  # a SQLite store is created, as init-tracking does
    assert (tmp_path / "new.db").is_file()


def test_the_store_check_keeps_the_users_http_settings(monkeypatch):
    # A slow but live tracking server the user gave a long timeout is not refused by the check's defaults.
    seen = {}

    class Client:
        def __init__(self, tracking_uri):
            pass

        def search_experiments(self, max_results):
            seen.update({name: os.environ.get(name) for name in store.RUN_HTTP_ENV_DEFAULTS})
            return []

    monkeypatch.setattr(store, "MlflowClient", Client)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "600")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    store.check_store("http://tracking.example:5000")
    assert seen == {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "600"}
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # restored afterwards
