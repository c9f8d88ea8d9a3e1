"""srlib.rundir.record: the metrics.json record written once and read back, statuses, outcomes."""

import json

import pytest

from srlib.files import write_json_atomic
from srlib.rundir.layout import METRICS_FILE, OUTCOME_FILE
from srlib.rundir.record import load_run, read_record, run_record, write_outcome

INFO = {"classes": ("background", "cat"), "palette": [(0, 0, 0), (255, 0, 0)]}
CONFIG = {"seed": 2, "threads": 1, "data": {"name": "generated"}, "model": {"preset": "tiny"},
          "loss": {"pixel": "focal", "center": False, "mea": True, "srf": True, "srl": False}}
AXES = {"dataset": "gen-b", "preset": "tiny", "pixel": "focal", "sr": "mea+srf", "seed": 2}


def write_record(run_dir, axes=AXES):
    record = run_record(cfg=CONFIG, config_hash="abc", data_fingerprint="0123456789abcdef", axes=axes, version="0",
                        tags={"git_commit": "c0"}, device="cpu", info=INFO, metrics={"miou": 0.5}, cost={},
                        train={"iters": 3})
    write_json_atomic(run_dir / METRICS_FILE, record)
    return record


def test_record_round_trips_and_its_axes_locate_a_moved_run(tmp_path):
    run_dir = tmp_path / "copied-elsewhere"
    record = write_record(run_dir)
    assert record["palette"] == [[0, 0, 0], [255, 0, 0]] and record["git_commit"] == "c0"
    loaded = load_run(run_dir)
    assert loaded["status"] == "FINISHED" and loaded["result"] == record
    assert {k: loaded[k] for k in AXES} == AXES  # from the record: the path spells nothing, the config no id


def test_path_segments_win_and_config_is_the_last_resort(tmp_path):
    spelled = tmp_path / "dataset~gen-a/preset~tiny/pixel~focal/sr~mea+srf/seed~2"
    write_record(spelled)
    assert load_run(spelled)["dataset"] == "gen-a"
    old = tmp_path / "old"
    write_record(old, axes=None)  # written before records carried their axes
    assert load_run(old)["dataset"] == "generated"


def test_statuses_and_outcomes(tmp_path):
    assert load_run(tmp_path / "dataset~d/preset~p/pixel~ce/sr~mea/seed~0")["status"] == "MISSING"
    failed = tmp_path / "failed"
    write_outcome(failed / OUTCOME_FILE, "FAILED", "abc", "NonFiniteLoss: nan")
    (failed / "run.yaml").write_text(json.dumps(CONFIG))
    run = load_run(failed)
    assert (run["status"], run["error"], run["sr"]) == ("FAILED", "NonFiniteLoss: nan", "mea+srf")
    with pytest.raises(ValueError, match="FINISHED or FAILED"):
        write_outcome(failed / "x.json", "DONE", "abc")
    (failed / METRICS_FILE).write_text('{"status": "WEIRD"}')
    with pytest.raises(ValueError, match="status must be one of"):
        read_record(failed)
    (failed / METRICS_FILE).write_text("{")
    with pytest.raises(ValueError, match="metrics.json is not valid JSON"):
        read_record(failed)
