"""The SR mechanism measured in a run: every exit's mIoU, the head-teacher agreement and the head's accuracy where
exit 1 is wrong, checked against an independent computation from the run's own model outputs."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from mlflow import MlflowClient

from srlib.cli import main
from srlib.registries import resolve_config
from srlib.evaluate import evaluate
from srlib.metrics import ExitAgreement
from srlib.train import Run


@pytest.fixture
def trained(config):
    """A mea+srf run's model after 3 training steps (no run directory)."""
    cfg = resolve_config(config, ["loss.srl=false", "optim.iters=3"])
    run = Run(cfg, out_dir=None)
    run.model.train()
    for batch in run.loader():
        run.train_step(batch)
    return run


def _miou(confusion: np.ndarray) -> float:
    tp, union = np.diag(confusion), confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    return float(np.mean(tp[union > 0] / union[union > 0]))


def test_exit_scores_match_a_computation_from_the_models_own_outputs(trained):
    run = trained
    metrics, _ = run.evaluate(run.eval_set, keep=0)
    classes, exits = run.num_classes, len(run.model.exits) + 1
    confusions = np.zeros((exits, classes, classes), dtype=np.int64)
    agree = valid_pixels = teacher_wrong = head_fixes = 0
    run.model.eval()
    with torch.no_grad():
        for item in run.eval_set:
            out = run.model(item["image"][None])
            preds = [F.interpolate(z, size=item["mask"].shape, mode="bilinear", align_corners=False).argmax(1)[0]
                     .numpy() for z in out["seg"]]
            mask = item["mask"].numpy()
            valid = mask != 255
            for k, pred in enumerate(preds):
                np.add.at(confusions[k], (mask[valid], pred[valid]), 1)
            teacher, head, truth = preds[0][valid], preds[-1][valid], mask[valid]
            valid_pixels += valid.sum()
            agree += (head == teacher).sum()
            teacher_wrong += (teacher != truth).sum()
            head_fixes += ((head == truth) & (teacher != truth)).sum()
    for k in range(exits):
        assert metrics[f"exit{k + 1}_miou"] == pytest.approx(_miou(confusions[k]), abs=1e-9)
    assert metrics[f"exit{exits}_miou"] == pytest.approx(metrics["miou"], abs=1e-12)  # the head is exit N
    assert metrics["teacher_agreement"] == pytest.approx(agree / valid_pixels, abs=1e-12)
    assert metrics["head_accuracy_teacher_wrong"] == pytest.approx(head_fixes / teacher_wrong, abs=1e-12)


def test_head_scores_and_pictures_are_the_test_time_models(trained):
    run = trained
    stacked, stacked_pictures = run.evaluate(run.eval_set, keep=2)
    alone, pictures = evaluate(run.model.inference_model(), run.eval_set, run.info, device=run.device,
                               batch_size=run.cfg["data"]["eval_batch_size"], keep=2)
    assert {key: stacked[key] for key in alone} == alone  # bitwise: the same upsampling of the same logits
    assert all(np.array_equal(stacked_pictures[k], pictures[k]) for k in pictures)


def test_agreement_counts_by_hand():
    meter = ExitAgreement(num_classes=3, exits=2)
    target = torch.tensor([[0, 1, 2, 255]])
    teacher, head = torch.tensor([[0, 0, 0, 1]]), torch.tensor([[0, 1, 0, 2]])
    meter.update([teacher, head], target)
    scores = meter.compute()
    assert scores["teacher_agreement"] == 2 / 3  # pixels 1 and 3 of the three valid ones
    assert scores["head_accuracy_teacher_wrong"] == 1 / 2  # the teacher misses pixels 2 and 3; the head fixes 2
    assert scores["exit1_miou"] == pytest.approx((1 / 3 + 0 + 0) / 3)  # class 0: tp 1, union 3
    with pytest.raises(ValueError, match="at least 2 exits"):
        ExitAgreement(num_classes=3, exits=1)


def test_a_run_records_logs_and_curves_the_mechanism(config, tmp_path):
    cfg = yaml.safe_load(config.read_text())
    cfg["run"]["val_every"] = 6
    cfg["loss"]["srl"] = False
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    exits = [key for key in metrics if key.startswith("exit") and key.endswith("_miou")]
    assert exits == [f"exit{k}_miou" for k in range(1, len(exits) + 1)] and len(exits) >= 2
    assert 0 <= metrics["teacher_agreement"] <= 1
    points = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    curve = [point["metrics"] for point in points if "val_subset/miou_pct" in point["metrics"]]
    assert [sorted(k for k in p if k.startswith("val_subset/")) for p in curve] == [[
        "val_subset/exit1_miou_pct", "val_subset/head_accuracy_teacher_wrong_pct", "val_subset/miou_pct",
        "val_subset/teacher_agreement_pct"]] * 2
    assert all("loss_unweighted/srf_gap" in p["metrics"] for p in points if "loss_unweighted/srf" in p["metrics"])
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("test").experiment_id])
    logged = mlflow_run.data.metrics
    assert logged["val/exit1_miou_pct"] == pytest.approx(100 * metrics["exit1_miou"])
    assert logged["val/teacher_agreement_pct"] == pytest.approx(100 * metrics["teacher_agreement"])


def test_a_baseline_run_has_no_exit_scores(config, tmp_path):
    out = tmp_path / "base"
    assert main(["run", str(config), "--set", "loss.mea=false", "--set", "loss.srf=false", "--set", "loss.srl=false",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert not [key for key in metrics if key.startswith("exit") or key.startswith("teacher")]
