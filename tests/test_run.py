"""One run end to end through the ``srlib`` CLI on a tiny generated dataset."""

import json
import subprocess
import sys

import pytest
import torch
from mlflow import MlflowClient

from srlib.cli import main
from srlib.config import ConfigError
from srlib.identity import config_hash
from srlib.registries import resolve_config
from srlib.losses import PIXEL_LOSSES
from srlib.files import write_json_atomic
from srlib.train import Run

ITERS = 12  # the config fixture's iterations (conftest.py)


def srlib(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "srlib", *args], capture_output=True, text=True, timeout=300)


def test_run_writes_metrics_and_is_a_no_op_when_rerun(config, tmp_path):
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out)]) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["status"] == "FINISHED"
    assert result["axes"] == {"dataset": "generated", "preset": "deeplabv3_resnet18", "pixel": "ce", "setting": "",
                              "sr": "mea+srf+srl", "seed": 0}
    assert 0 <= result["metrics"]["miou"] <= 1
    assert result["cost"]["params_train"] > result["cost"]["params_test"]
    assert result["cost"]["macs_train"] > result["cost"]["macs_test"]
    for name in ("config.yaml", "per_class_iou.csv", "pictures.png", "predictions.npz"):
        assert (out / name).exists(), name
    assert not (out / "checkpoint").exists()  # only served resume
    stamp = (out / "metrics.json").stat().st_mtime_ns
    assert main(["run", str(config), "--out", str(out)]) == 0
    assert (out / "metrics.json").stat().st_mtime_ns == stamp

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("test").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["optim.iters"] == str(ITERS)
    assert run.data.tags["config_hash"] == result["config_hash"]
    assert len(client.get_metric_history(run.info.run_id, "loss_weighted/total")) == ITERS // 2


def test_rerun_of_a_finished_run_imports_neither_torch_nor_mlflow(config, tmp_path):
    out = tmp_path / "done"
    # A config naming its device: "auto" needs torch to ask for CUDA.
    record = {"status": "FINISHED", "config_hash": config_hash(resolve_config(config, ["device=cpu"])),
              "metrics": {"miou": 0.5, "pixel_accuracy": 0.75}}
    write_json_atomic(out / "metrics.json", record)
    outcome = tmp_path / "outcome.json"
    code = ("import sys; from srlib.cli import main; "
            f"code = main(['run', {str(config)!r}, '--set', 'device=cpu', '--out', {str(out)!r}, "
            f"'--outcome', {str(outcome)!r}]); "
            "print(code, [name for name in ('torch', 'mlflow') if name in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == [f"{out}: mIoU 0.5000, pixel accuracy 0.7500", "0 []"], done.stderr
    assert json.loads(outcome.read_text())["status"] == "FINISHED"


def test_non_finite_loss_fails_naming_iteration_and_term(config, tmp_path):
    out = tmp_path / "diverged"
    outcome = tmp_path / "outcome.json"
    done = srlib("run", str(config), "--out", str(out), "--outcome", str(outcome), "--set", "optim.lr=1e30")
    assert done.returncode == 0, done.stderr  # a failed training is a recorded outcome
    record = json.loads(outcome.read_text())
    assert record["status"] == "FAILED"
    assert "iteration" in record["error"] and "loss term" in record["error"]
    assert not (out / "metrics.json").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("test").experiment_id])
    assert run.info.status == "FAILED"


def test_missing_dataset_root_is_bad_input_and_leaves_no_run_dir(config, tmp_path):
    out = tmp_path / "never"
    done = srlib("run", str(config), "--out", str(out), "--set", f"data.root={tmp_path / 'nowhere'}")
    assert done.returncode == 2
    assert "nowhere" in done.stderr
    assert not out.exists()


def test_bad_input_to_each_command_is_one_line_naming_it(config, tmp_path, capsys):
    def refused(args: list[str], named: str) -> None:
        assert main(args) == 2
        error = capsys.readouterr().err.strip()
        assert named in error and len(error.splitlines()) == 1, error

    refused(["run", str(config), "--out", str(tmp_path / "o"), "--set", "optim.lr=[1"], "--set optim.lr=[1: ")
    assert not (tmp_path / "o").exists()
    refused(["run", str(config), "--out", str(tmp_path / "o"), "--set", "model.preset=deeplab_nope",
             "--set", f"data.root={tmp_path / 'nowhere'}"],
            "'model.preset': unknown value 'deeplab_nope'")  # not the root
    refused(["cost", str(config), "--out", str(tmp_path)], f"--out {tmp_path} is a directory")  # before measuring
    runs = tmp_path / "runs"
    (runs / "half").mkdir(parents=True)
    (runs / "half" / "metrics.json").write_text(json.dumps({"status": "FINISHED", "config_hash": "x", "config": {}}))
    refused(["tables", str(runs / "half"), "--out", str(tmp_path / "t")], f"{runs / 'half' / 'metrics.json'}: not a")
    refused(["import-runs", str(runs / "half"), "--uri", f"sqlite:///{tmp_path / 'i.db'}", "--experiment", "e"],
            "no 'metrics'")
    (runs / "yaml").mkdir()
    (runs / "yaml" / "config.yaml").write_text("a: [")
    refused(["tables", str(runs / "yaml"), "--out", str(tmp_path / "t")],
            f"{runs / 'yaml' / 'config.yaml'} is not valid YAML")
    cost = tmp_path / "cost" / "dataset~g" / "preset~p" / "pixel~ce" / "exit~none" / "sr~baseline.json"
    cost.parent.mkdir(parents=True)
    cost.write_text("{}")
    failed = runs / "dataset~g" / "preset~p" / "pixel~ce" / "sr~baseline" / "seed~0"  # a run the tables can show
    failed.mkdir(parents=True)
    (failed / "outcome.json").write_text(json.dumps({"status": "FAILED", "config_hash": "x", "error": "boom"}))
    refused(["tables", str(failed), "--out", str(tmp_path / "t"), "--cost", str(cost)], f"{cost}: not a cost file")
    (tmp_path / "list.yaml").write_text("- a\n")
    refused(["tables", str(failed), "--out", str(tmp_path / "t"), "--benchmark", str(tmp_path / "list.yaml")],
            "list.yaml: expected a mapping")
    with pytest.raises(SystemExit):  # argparse: usage and the error, exit status 2
        main(["weak-labels", str(tmp_path), "--limit", "0"])
    assert "--limit: expected an integer >= 1, got '0'" in capsys.readouterr().err


def test_checkpoint_of_another_config_is_refused(config, tmp_path):
    out = tmp_path / "run"
    (out / "checkpoint").mkdir(parents=True)
    torch.save({"config_hash": "0123456789ab"}, out / "checkpoint" / "last.pt")
    done = srlib("run", str(config), "--out", str(out))
    assert done.returncode == 2
    assert "0123456789ab" in done.stderr and "last.pt" in done.stderr
    assert sorted(p.name for p in out.iterdir() if p.name != ".lock") == ["checkpoint"]


def test_a_crash_is_not_recorded_as_a_method_failure(config, tmp_path, monkeypatch):
    # Out of memory, a killed worker or a full disk must fail the job (so it is retried and resumes),
    # not become a permanent FAILED cell of the ablation.
    import srlib.train

    def crash(self, tracker):
        raise RuntimeError("worker killed")

    monkeypatch.setattr(srlib.train.Run, "train", crash)
    outcome = tmp_path / "outcome.json"
    with pytest.raises(RuntimeError, match="worker killed"):
        main(["run", str(config), "--out", str(tmp_path / "run"), "--outcome", str(outcome)])
    assert not outcome.exists()


def test_unreachable_tracking_store_still_writes_metrics(config, tmp_path):
    out = tmp_path / "offline"
    done = srlib("run", str(config), "--out", str(out), "--set", "tracking.uri=http://127.0.0.1:9")
    assert done.returncode == 0, done.stderr
    assert "127.0.0.1:9" in done.stderr  # warned loudly, naming the store
    assert json.loads((out / "metrics.json").read_text())["status"] == "FINISHED"


def toy_pixel_loss(ignore_index: int = 255):
    """A pixel loss as a user adds one: this factory and one PIXEL_LOSSES entry, nothing else."""
    def loss(logits, target):
        valid = target != ignore_index
        probs = logits.softmax(1).gather(1, torch.where(valid, target, 0)[:, None])[:, 0]
        return ((1 - probs) * valid).sum() / valid.sum().clamp_min(1)

    return loss


def test_a_pixel_loss_registered_at_run_time_validates_and_trains_a_step(data_root, monkeypatch):
    cfg = {"threads": 1, "data": {"root": str(data_root), "crop_size": 32, "batch_size": 2},
           "model": {"preset": "fcn_mobilenetv2_050", "exit": "light"},
           "loss": {"pixel": "toy", "mea": True, "srf": True}, "tracking": {"enabled": False}}
    with pytest.raises(ConfigError,
                       match=f"'loss.pixel': unknown value 'toy'; valid: {', '.join(sorted(PIXEL_LOSSES))}"):
        resolve_config(cfg)
    monkeypatch.setitem(PIXEL_LOSSES, "toy", toy_pixel_loss)
    run = Run(resolve_config(cfg), out_dir=None)
    assert run.loss.needs == {"exits": True, "classify": True, "feature_proj": False}
    terms = run.timed_step(next(iter(run.loader())))
    assert set(terms) == {"seg", "seg_head", "cls", "srf", "srf_gap", "total"} and bool(terms["total"].isfinite())



def test_cost_of_an_sr_config_times_it_against_its_baseline_in_interleaved_rounds(config, tmp_path):
    out = tmp_path / "cost.json"
    assert main(["cost", str(config), "--set", "run.cost_steps=3", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    spread = record["step_time_ratio"]  # one baseline step and one all-SR step per round, 3 timed rounds
    assert spread["n"] == 3 and 0 < spread["q1"] <= spread["median"] <= spread["q3"]
    assert record["step_time_s"] > 0 and record["params_train"] > record["params_test"]
    base = tmp_path / "base.json"
    assert main(["cost", str(config), "--set", "run.cost_steps=3", "--set", "loss.mea=false", "--set", "loss.srf=false",
                 "--set", "loss.srl=false", "--out", str(base)]) == 0
    assert "step_time_ratio" not in json.loads(base.read_text())  # a baseline has nothing to be timed against
    short = tmp_path / "short.json"  # fewer iterations than the warm-up: every round is timed
    assert main(["cost", str(config), "--set", "optim.iters=3", "--out", str(short)]) == 0
    assert json.loads(short.read_text())["step_time_ratio"]["n"] == 3
