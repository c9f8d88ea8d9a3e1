"""A run killed at any instant, run twice at once, or pointed at other data: nothing lost, nothing done twice.

Kills are exact: ``SRLIB_KILL_AT=<point>`` makes ``srlib run`` SIGKILL itself there (``srlib.files.kill_point``).
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from srlib import files
from srlib.rundir import layout, lock, mlflow_run
from srlib.data.synth import generate

ITERS = 12  # the config fixture's iterations (conftest.py): checkpoints at 4, 8, 12; losses logged every 2


def srlib(*args: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, files.KILL_ENV: kill_at} if kill_at else None
    return subprocess.run([sys.executable, "-m", "srlib", *args], capture_output=True, text=True, timeout=300, env=env)


def mlflow_runs(tmp_path: Path) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("test")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def steps(tmp_path: Path, run, key: str) -> list[int]:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    return sorted(m.step for m in client.get_metric_history(run.info.run_id, key))


def uninterrupted(config: Path, tmp_path: Path) -> dict:
    out = tmp_path / "reference"
    done = srlib("run", str(config), "--out", str(out), "--set", "tracking.enabled=false")
    assert done.returncode == 0, done.stderr
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("point", ["step:6", "history-written:4", "history-written:8", "checkpoint:8", "checkpoint:12"])
def test_a_killed_run_resumes_to_the_uninterrupted_result_and_logs_each_step_once(config, tmp_path, point):
    out = tmp_path / "killed"
    killed = srlib("run", str(config), "--out", str(out), kill_at=point)
    assert killed.returncode == -signal.SIGKILL and not (out / "metrics.json").exists()

    assert srlib("run", str(config), "--out", str(out)).returncode == 0
    resumed, expected = json.loads((out / "metrics.json").read_text()), uninterrupted(config, tmp_path)
    assert resumed["metrics"] == expected["metrics"]
    assert resumed["train"]["final_loss"] == expected["train"]["final_loss"] is not None
    assert resumed["cost"]["step_time_s"] is not None and resumed["cost"]["peak_memory_mib"] > 0
    (run,) = mlflow_runs(tmp_path)
    assert run.info.status == "FINISHED"
    assert steps(tmp_path, run, "loss_weighted/total") == list(range(2, ITERS + 1, 2))  # each logged step once
    history = [json.loads(line)["step"] for line in (out / "history.jsonl").read_text().splitlines()]
    assert history == list(range(2, ITERS + 1, 2))


@pytest.mark.parametrize("point", ["metrics-written", "tracking-finished", "checkpoint-removed"])
def test_a_run_killed_after_its_record_is_completed_by_the_rerun_not_retrained(config, tmp_path, point):
    out, outcome = tmp_path / "run", tmp_path / "outcome.json"
    assert srlib("run", str(config), "--out", str(out), "--outcome", str(outcome), kill_at=point).returncode == -9
    record = (out / "metrics.json").read_text()
    assert (out / "checkpoint").exists() == (point != "checkpoint-removed") and not outcome.exists()

    done = srlib("run", str(config), "--out", str(out), "--outcome", str(outcome))
    assert done.returncode == 0, done.stderr
    assert (out / "metrics.json").read_text() == record  # not retrained
    assert json.loads(outcome.read_text())["status"] == "FINISHED"
    assert not (out / "checkpoint").exists()
    (run,) = mlflow_runs(tmp_path)  # one MLflow run, finished, each point once
    assert run.info.status == "FINISHED"
    assert steps(tmp_path, run, "val/miou_pct") == [0]
    assert steps(tmp_path, run, "loss_weighted/total") == list(range(2, ITERS + 1, 2))


@pytest.mark.parametrize("point", ["mlflow-run-created", "mlflow-run-id-kept"])
def test_a_run_killed_while_opening_its_mlflow_run_leaves_one_mlflow_run(config, tmp_path, point):
    out = tmp_path / "run"
    assert srlib("run", str(config), "--out", str(out), kill_at=point).returncode == -signal.SIGKILL
    done = srlib("run", str(config), "--out", str(out))
    assert done.returncode == 0, done.stderr
    (run,) = mlflow_runs(tmp_path)  # the run the killed process created, continued: no orphan, no second run
    assert run.info.status == "FINISHED" and run.data.params["optim.iters"] == str(ITERS)
    assert run.data.tags["run_dir"] == str(out.resolve())
    assert steps(tmp_path, run, "loss_weighted/total") == list(range(2, ITERS + 1, 2))


def test_a_run_killed_while_writing_its_outcome_leaves_no_temporary_file(config, tmp_path):
    out = tmp_path / "run"
    args = ("run", str(config), "--out", str(out), "--outcome", str(out / "outcome.json"),
            "--set", "tracking.enabled=false")
    assert srlib(*args, kill_at="temp-written:outcome.json").returncode == -signal.SIGKILL
    assert [path.name.split(".")[1:3] for path in out.glob(".*.tmp")] == [["outcome", "json"]]
    done = srlib(*args)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "outcome.json").read_text())["status"] == "FINISHED"
    assert list(out.rglob(".*.tmp")) == []


def test_a_second_process_on_a_busy_run_directory_is_refused_naming_the_holder(config, tmp_path):
    out = tmp_path / "run"
    with lock.lock(out):
        done = srlib("run", str(config), "--out", str(out))
    assert done.returncode == 1
    assert str(out) in done.stderr and str(os.getpid()) in done.stderr and "Traceback" not in done.stderr
    assert mlflow_runs(tmp_path) == []  # MLflow untouched


def test_a_finished_run_is_another_run_on_other_data_and_the_same_run_on_a_moved_copy(config, tmp_path, data_root):
    out = tmp_path / "run"
    assert srlib("run", str(config), "--out", str(out), "--set", "tracking.enabled=false").returncode == 0
    record = (out / "metrics.json").read_text()

    other = tmp_path / "other"
    generate(other, seed=1, size=32, n_train=16, n_val=8, n_test=8)
    done = srlib("run", str(config), "--out", str(out), "--set", f"data.root={other}")
    assert done.returncode == 2 and "finished run" in done.stderr and "data fingerprint" in done.stderr
    assert f'data.root: "{data_root}" -> "{other}"' in done.stderr
    assert (out / "metrics.json").read_text() == record  # never overwritten

    moved = tmp_path / "moved"
    subprocess.run(["cp", "-r", str(data_root), str(moved)], check=True)
    done = srlib("run", str(config), "--out", str(out), "--set", f"data.root={moved}")
    assert done.returncode == 0 and "mIoU" in done.stdout


def test_a_refused_rerun_names_each_key_that_differs_with_both_values(config, tmp_path):
    out = tmp_path / "run"
    assert srlib("run", str(config), "--out", str(out), kill_at="checkpoint:4").returncode == -signal.SIGKILL
    other = ("--set", "optim.iters=8", "--set", "loss.srf=false", "--set", "run.log_every=3")  # log_every: no matter
    for refused in ("checkpoint", "finished run"):
        done = srlib("run", str(config), "--out", str(out), *other)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert refused in done.stderr and "loss.srf: true -> false; optim.iters: 12 -> 8)" in done.stderr
        assert srlib("run", str(config), "--out", str(out)).returncode == 0  # resumes, then is a finished run


def test_validation_and_logging_cadence_do_not_change_what_a_run_computes(config, tmp_path):
    out = tmp_path / "validated"
    done = srlib("run", str(config), "--out", str(out), "--set", "run.val_every=4", "--set", "run.log_every=3")
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "metrics.json").read_text())["metrics"] == uninterrupted(config, tmp_path)["metrics"]
    (run,) = mlflow_runs(tmp_path)
    assert steps(tmp_path, run, "val_subset/miou_pct") == [4, 8, 12]


def damage(root: Path, tmp_path: Path, how: str) -> Path:
    """A copy of the generated dataset with one training file damaged; returns the damaged file."""
    copy = tmp_path / "damaged"
    subprocess.run(["cp", "-r", str(root), str(copy)], check=True)
    name = (copy / "splits" / "train.txt").read_text().split()[5]
    if how == "truncated image":
        path = copy / "images" / f"{name}.png"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # a mask value outside 0..9 and 255
        from PIL import Image
        import numpy as np

        path = copy / "masks" / f"{name}.png"
        mask = np.array(Image.open(path))
        mask[0, 0] = 42
        Image.fromarray(mask).save(path)
    return path


@pytest.mark.parametrize("how", ["truncated image", "bad mask value"])
def test_a_damaged_file_is_named_before_anything_is_written(config, tmp_path, data_root, how):
    path = damage(data_root, tmp_path, how)
    out = tmp_path / "run"
    done = srlib("run", str(config), "--out", str(out), "--set", f"data.root={path.parent.parent}")
    assert done.returncode == 2
    assert str(path) in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not out.exists() and mlflow_runs(tmp_path) == []


def test_a_mask_edited_after_its_check_is_checked_again_even_at_the_same_size(tmp_path, data_root):
    from PIL import Image
    import numpy as np

    from srlib.data import build_dataset
    from srlib.data.check import check_items, fingerprint

    copy = tmp_path / "data"
    subprocess.run(["cp", "-r", str(data_root), str(copy)], check=True)
    dataset = build_dataset("generated", copy, "train")
    mask_path = dataset.items[5][2]
    original = Image.open(mask_path)
    original.save(mask_path, compress_level=0)  # stored uncompressed: the file size depends on the shape only
    size, identity = mask_path.stat().st_size, fingerprint("generated", [dataset])
    check_items(dataset, f"{identity}-train")  # passes, and is remembered
    edited = Image.fromarray(np.where(np.arange(original.width) == 0, 42, np.array(original)).astype(np.uint8), "P")
    edited.putpalette(original.getpalette())
    edited.save(mask_path, compress_level=0)
    later = mask_path.stat().st_mtime_ns + 10**9
    os.utime(mask_path, ns=(later, later))  # the edit comes a second after the check
    assert mask_path.stat().st_size == size and fingerprint("generated", [dataset]) == identity
    with pytest.raises(ValueError, match=str(mask_path)):
        check_items(dataset, f"{identity}-train")


def test_a_diverged_run_without_outcome_and_an_unwritable_out_end_in_one_line(config, tmp_path):
    diverged = srlib("run", str(config), "--out", str(tmp_path / "d"), "--set", "optim.lr=1e30")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unwritable = srlib("run", str(config), "--out", str(blocker / "run"))
    for done, words in ((diverged, "loss term"), (unwritable, str(blocker))):
        assert done.returncode == 1
        assert words in done.stderr and "Traceback" not in done.stderr


def test_an_empty_or_damaged_mlflow_run_id_is_treated_as_absent(tmp_path):
    (tmp_path / "checkpoint").mkdir()
    for text in ("", "\n", "not an id/../x"):
        (tmp_path / "checkpoint" / layout.RUN_ID_FILE).write_text(text)
        assert mlflow_run.read_run_id(tmp_path) is None
    mlflow_run.write_run_id(tmp_path, "0123abcd")
    assert mlflow_run.read_run_id(tmp_path) == "0123abcd"


def test_results_are_readable_by_collaborators(config, tmp_path):
    old = os.umask(0o022)
    try:
        out, outcome = tmp_path / "run", tmp_path / "outcome.json"
        assert srlib("run", str(config), "--out", str(out), "--outcome", str(outcome),
                     "--set", "tracking.enabled=false").returncode == 0
    finally:
        os.umask(old)
    for path in (out / "metrics.json", outcome):
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_an_unreachable_store_is_warned_about_once(config, tmp_path):
    done = srlib("run", str(config), "--out", str(tmp_path / "offline"), "--set", "tracking.uri=http://127.0.0.1:9")
    assert done.returncode == 0, done.stderr
    assert sum("127.0.0.1:9" in line for line in done.stderr.splitlines()) == 1
