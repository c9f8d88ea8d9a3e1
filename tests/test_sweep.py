"""srlib.sweep in-process: SR names, axis expansion, run paths and their parser, each run's config."""

import copy
import json
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from srlib.sweep import benchmark, cells, run_configs

REPO = Path(__file__).resolve().parents[1]
SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
BENCH = {
    "name": "unit",
    "base": {"optim": {"iters": 3}},
    "axes": {
        "dataset": [{"name": "generated", "generate": {"size": 32}}],
        "preset": ["p1", "p2"],
        "pixel": ["ce", "focal+center"],
        "sr": ["srl+mea", "baseline"],
        "seed": [0, 1],
    },
    "overrides": [{"where": {"preset": "p2", "sr": "mea+srl"}, "config": {"optim": {"lr": 0.5}}}],
    "resources": {"train": {"threads": 2}},
}


def expanded(bench: dict) -> dict:
    bench = copy.deepcopy(bench)
    validate(bench, SCHEMA)  # fills the schema defaults, as Snakemake does
    return benchmark.expand(bench)


def test_sr_names_are_canonical_and_labelled():
    assert cells.canonical_sr("srl+mea") == "mea+srl"
    assert cells.sr_label("mea+srf+srl") == "+MEA+SR-F+SR-L"
    assert cells.sr_from_flags(cells.sr_flags("srf+srl")) == "srf+srl"
    with pytest.raises(ValueError, match=r"'mea\+mae'"):
        cells.canonical_sr("mea+mae")
    assert benchmark.expand_sr(["all"], "axes.sr") == list(cells.SR_ORDER)


def test_pixel_labels_round_trip_through_the_run_config():
    for label in ("ce", "lal", "ce+center", "focal+center"):
        assert cells.pixel_label(cells.pixel_flags(label)) == label
    assert cells.pixel_flags("ce") == {"pixel": "ce"}  # configs without center keep their old shape


def test_runs_are_the_product_of_the_axes_in_table_order():
    sw = expanded(BENCH)
    assert sw["axes"]["sr"] == ["baseline", "mea+srl"]
    assert len(sw["runs"]) == 1 * 2 * 2 * 2 * 2
    first = sw["run_dirs"][0]
    assert first == ("results/unit/runs/dataset~generated/preset~p1/pixel~ce/sr~baseline/seed~0")
    assert benchmark.generated_root(sw["datasets"]["generated"]["generate"]) == \
        "results/data/generated/size~32/train~2000/val~500/test~500/seed~0"
    # cost: per dataset x preset x pixel loss x SR combination, the baseline without exits
    assert sorted((c["preset"], c["pixel"], c["exit"]) for c in sw["costs"]) == [
        (p, px, e) for p in ("p1", "p2") for px in ("ce", "focal+center") for e in ("light", "none")]


def test_paths_spell_the_axes_and_parse_back():
    sw = expanded(BENCH)
    for run, run_dir in zip(sw["runs"], sw["run_dirs"]):
        assert cells.path_axes(run_dir) == run
        assert cells.run_axes(run_dir, None) == {**run, "setting": "", "seed": int(run["seed"])}
    cost = sw["cost_files"][-1]
    assert cells.path_axes(cost) == {"dataset": "generated", "preset": "p2", "pixel": "focal+center", "exit": "light",
                                     "sr": "mea+srl"}


def test_run_dir_without_segments_takes_its_axes_from_the_config():
    cfg = {"seed": 3, "data": {"name": "voc_aug"}, "model": {"preset": "p"},
           "loss": {"pixel": "ce", "center": True, "mea": True, "srf": False, "srl": True}}
    assert cells.run_axes("somewhere/run", cells.config_axes(cfg)) == {
        "dataset": "voc_aug", "preset": "p", "pixel": "ce+center", "setting": "", "sr": "mea+srl", "seed": 3}
    with pytest.raises(ValueError, match="no key~value path segments"):
        cells.run_axes("somewhere/run", None)


def test_run_config_is_base_dataset_overrides_then_axes():
    sw = expanded(BENCH)
    run = {"dataset": "generated", "preset": "p2", "pixel": "focal+center", "sr": "mea+srl", "seed": "1"}
    cfg = run_configs.run_config(sw, run)
    assert cfg["optim"] == {"iters": 3, "lr": 0.5}
    assert cfg["loss"] == {"pixel": "focal", "center": True, "mea": True, "srf": False, "srl": True}
    assert (cfg["seed"], cfg["threads"], cfg["model"]["preset"]) == (1, 2, "p2")
    assert cfg["data"]["root"] == sw["datasets"]["generated"]["root"]
    assert cfg["tracking"] == {  # display-only: the run's MLflow name (axes that vary in front) and cell tags
        "enabled": True, "uri": cfg["tracking"]["uri"], "experiment": "unit",
        "run_name": "p2 · focal+center · mea+srl · s1",
        "tags": {"benchmark": "unit", **run}}
    other = run_configs.run_config(sw, {**run, "preset": "p1"})
    assert "lr" not in other["optim"]  # the override matches p2 only
    cell = {"dataset": "generated", "preset": "p1", "pixel": "focal+center", "exit": "official", "sr": "mea+srl"}
    cost = run_configs.cost_config(sw, cell)
    assert cost["model"]["exit"] == "official" and cost["tracking"]["enabled"] is False
    assert (cost["loss"]["pixel"], cost["loss"]["center"], cost["seed"]) == ("focal", True, 0)  # the sweep's first seed


@pytest.mark.parametrize("change, named", [
    (lambda b: b["base"].update(seed=3), "base.seed: set by the benchmark's axes.seed"),
    (lambda b: b["base"].update(loss={"center": True}), "base.loss.center: set by the benchmark's axes.pixel"),
    (lambda b: b["base"]["optim"].update(itres=5), "'base.optim.itres'"),
    (lambda b: b["base"]["optim"].update(lr="fast"), "'base.optim.lr'"),
    (lambda b: b["overrides"][0]["where"].update(seed=7), "overrides[0].where.seed: ['7'] not on the axis"),
    (lambda b: b["axes"].update(sr=["mea+mea"]), "axes.sr: unknown SR combination 'mea+mea'"),
    (lambda b: b["axes"]["dataset"].append("generated"), "dataset id 'generated' appears twice"),
    (lambda b: b["axes"]["dataset"].append("voc_aug"), "needs a root"),
    (lambda b: b["axes"]["dataset"].append("generatd"), "axes.dataset[1]: unknown dataset 'generatd'; valid: ade20k,"),
])
def test_bad_benchmarks_are_rejected_naming_the_key(change, named):
    bench = copy.deepcopy(BENCH)
    change(bench)
    with pytest.raises(benchmark.BenchmarkError) as error:
        expanded(bench)
    assert named in str(error.value)


def test_the_committed_benchmarks_expand():
    default = expanded(yaml.safe_load((REPO / "benchmarks" / "default.yaml").read_text()))
    assert len(default["runs"]) == 24 and len(default["cost_files"]) == 3
    losses = expanded(yaml.safe_load((REPO / "benchmarks" / "losses.yaml").read_text()))
    assert "ce+center" in losses["axes"]["pixel"]


# ---- the settings axis ------------------------------------------------------------------------------
READINGS = {
    "name": "readings",
    "base": {"optim": {"iters": 3}},
    "axes": {
        "dataset": [{"name": "generated", "generate": {"size": 32}}],
        "preset": ["p1"],
        "settings": {"official": {"loss": {"variant": "official"}}, "paper": {"loss": {"variant": "paper"}},
                     "paper-features": {"loss": {"variant": "paper-features"}},
                     "wide": {"model": {"exit": "official", "exit_width": 64}}},
        "sr": ["baseline", "mea", "mea+srf", "mea+srl"],
        "seed": [0],
    },
    "overrides": [{"where": {"setting": "paper", "sr": "mea+srf"}, "config": {"loss": {"tau": 2.0}}}],
}


def _served(sw: dict) -> dict[str, list[str]]:
    """run dir below runs/ -> the settings it serves."""
    return {run_dir.split("/runs/")[1]: sw["served"][cells.cell_key(run)]
            for run, run_dir in zip(sw["runs"], sw["run_dirs"])}


def test_settings_are_an_axis_whose_cells_that_read_the_same_train_once():
    sw = expanded(READINGS)
    assert sw["axes"]["setting"] == ["official", "paper", "paper-features", "wide"]
    cell = "dataset~generated/preset~p1/pixel~ce/setting~{}/sr~{}/seed~0"
    assert _served(sw) == {
        cell.format("official", "baseline"): ["official", "paper", "paper-features", "wide"],  # reads no SR or exit key
        cell.format("official", "mea"): ["official"],  # official MEA counts void as background
        cell.format("paper", "mea"): ["paper", "paper-features"],  # paper-features differs in SR-F only
        cell.format("wide", "mea"): ["wide"],
        cell.format("official", "mea+srf"): ["official"],
        cell.format("paper", "mea+srf"): ["paper"],  # tau 2 by the override
        cell.format("paper-features", "mea+srf"): ["paper-features"],
        cell.format("wide", "mea+srf"): ["wide"],
        cell.format("official", "mea+srl"): ["official"],
        cell.format("paper", "mea+srl"): ["paper", "paper-features"],
        cell.format("wide", "mea+srl"): ["wide"],
    }


def test_a_setting_is_merged_before_the_overrides_and_tagged():
    sw = expanded(READINGS)
    run = {"dataset": "generated", "preset": "p1", "pixel": "ce", "setting": "paper", "sr": "mea+srf", "seed": "0"}
    cfg = run_configs.run_config(sw, run)
    assert cfg["loss"]["variant"] == "paper" and cfg["loss"]["tau"] == 2.0
    assert cfg["tracking"]["tags"] == {"benchmark": "readings", "dataset": "generated", "preset": "p1",
                                       "pixel": "ce", "setting": "paper", "sr": "mea+srf", "seed": "0",
                                       "serves": "paper"}
    assert cfg["tracking"]["run_name"] == "paper · mea+srf · s0"
    base = run_configs.run_config(sw, {**run, "setting": "official", "sr": "baseline"})
    assert base["tracking"]["tags"]["serves"] == "official,paper,paper-features,wide"
    assert cells.config_axes({**base, "seed": 0})["setting"] == "official"


def test_cost_jobs_are_shared_across_settings_like_runs():
    bench = {**READINGS, "cost": {"sr": ["baseline", "mea+srf"]}}
    files = [path.split("/cost/")[1] for path in expanded(bench)["cost_files"]]
    job = "dataset~generated/preset~p1/pixel~ce/setting~{}/exit~{}/sr~{}.json"
    assert files == [job.format("official", "none", "baseline"), *[job.format(s, "light", "mea+srf") for s in (
        "official", "paper", "paper-features")], job.format("wide", "official", "mea+srf")]  # its runs' own exit
    assert cells.path_axes(files[1])["setting"] == "official"


@pytest.mark.parametrize("change, named", [
    (lambda s: s.update(bad={"loss": {"srf": True}}), "axes.settings.bad.loss.srf: set by the benchmark's axes.sr"),
    (lambda s: s.update(bad={"seed": 4}), "axes.settings.bad.seed: set by the benchmark's axes.seed"),
    (lambda s: s.update(bad={"model": {"preset": "p2"}}), "axes.settings.bad.model.preset: set by the benchmark's"),
    (lambda s: s.update(bad={"loss": {"varient": "paper"}}), "'axes.settings.bad.loss.varient'"),
    (lambda s: s.update({"a/b": {}}), "axes.settings: name 'a/b' must match"),
])
def test_settings_that_set_what_an_axis_owns_or_unknown_keys_are_refused(change, named):
    bench = copy.deepcopy(READINGS)
    change(bench["axes"]["settings"])
    with pytest.raises(benchmark.BenchmarkError) as error:
        benchmark.expand(bench)  # unvalidated: the schema's name pattern is checked by the workflow
    assert named in str(error.value)


@pytest.mark.parametrize("name", ["default", "losses", "weak"])
def test_benchmarks_without_settings_keep_the_committed_runs_paths_and_hashes(name):
    from srlib.config import DEFAULTS, merge, resolve_auto
    from srlib.identity import config_hash

    sw = expanded(yaml.safe_load((REPO / "benchmarks" / f"{name}.yaml").read_text()))
    assert "setting" not in sw["axes"] and sw["served"] == {}
    committed = {}
    for path in (REPO / "results" / name / "reference_runs").glob("**/metrics.json"):
        committed[str(path.parent.relative_to(REPO / "results" / name / "reference_runs"))] = \
            json.loads(path.read_text())["config_hash"]
    ours = {run_dir.split("/runs/")[1]: config_hash(resolve_auto(merge(DEFAULTS, run_configs.run_config(sw, run))))
            for run, run_dir in zip(sw["runs"], sw["run_dirs"])}
    assert committed and {d: ours.get(d) for d in committed} == committed
