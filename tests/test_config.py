import json
import re
from pathlib import Path

import pytest
import yaml

from srlib.config import (
    CENTER_SUFFIX, DEFAULTS, FEATURE_NORMS, REGULARIZERS, SR_NAME, SUPERVISIONS, VARIANTS, ConfigError, flatten,
    load_schema, merge,
)
from srlib.data import DATASETS
from srlib.identity import LATER_KEYS, config_hash
from srlib.losses import PIXEL_LOSSES
from srlib.losses.locally_adaptive import WINDOWS
from srlib.models import EXITS, HEADS, PRESETS
from srlib.registries import resolve_config
from srlib.sweep.benchmark import SETTING_NAME

BENCHMARK_SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


def write(tmp_path, data, name="run.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_file_and_overrides_merge_over_defaults(tmp_path):
    cfg = resolve_config(write(tmp_path, {"optim": {"lr": 0.05}}), ["loss.mea=true", "data.scale_range=[0.5, 2]"])
    assert cfg["optim"]["lr"] == 0.05
    assert cfg["optim"]["iters"] == DEFAULTS["optim"]["iters"]
    assert cfg["loss"]["mea"] is True
    assert cfg["data"]["scale_range"] == [0.5, 2]


@pytest.mark.parametrize(
    ("data", "overrides", "named"),
    [
        ({"optim": {"lr_typo": 0.1}}, [], "optim.lr_typo"),
        ({"modle": {}}, [], "modle"),
        ({}, ["optim.lrr=0.1"], "optim.lrr"),
        ({"optim": {"lr": "fast"}}, [], "optim.lr"),
        ({"optim": {"lr": -1}}, [], "optim.lr"),
        ({"loss": {"tau": 0}}, [], "loss.tau"),
        ({"loss": {"w_srf": -0.5}}, [], "loss.w_srf"),
        ({"loss": {"variant": "papr"}}, [], "loss.variant"),
        ({"model": {"preset": "deeplab_nope"}}, [], "model.preset"),
        ({"model": {"exit": "heavy"}}, [], "model.exit"),
        ({"data": {"name": "imagenet"}}, [], "data.name"),
        ({"optim": {"iters": 2.5}}, [], "optim.iters': 2.5 is not of type 'integer'"),
        ({}, ["data.batch_size=2.5"], "data.batch_size': 2.5 is not"),
        ({"model": {"preset": None, "backbone": "resnet18"}}, [], "model.backbone 'resnet18' needs a model.head"),
        ({}, ["data.scale_range=[2, 1]"], "data.scale_range': low 2 is above high 1"),
    ],
)
def test_bad_values_are_rejected_naming_the_key(tmp_path, data, overrides, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        resolve_config(write(tmp_path, data), overrides)


def test_whole_number_floats_on_integer_keys_are_the_ints_they_mean(tmp_path):
    # YAML reads 2e4 as 20000.0; srlib runs it as 20000, the same run (config hash) as writing 20000.
    cfg = resolve_config(write(tmp_path, {"optim": {"iters": 2e4}}), ["data.batch_size=2.0", "seed=1.0"])
    assert (cfg["optim"]["iters"], cfg["data"]["batch_size"], cfg["seed"]) == (20000, 2, 1)
    assert all(type(value) is int for value in (cfg["optim"]["iters"], cfg["data"]["batch_size"], cfg["seed"]))
    plain = resolve_config(write(tmp_path, {"optim": {"iters": 20000}}), ["data.batch_size=2", "seed=1"])
    assert config_hash(cfg) == config_hash(plain)


REGISTRIES = {  # config key -> the registry its names come from
    "model.preset": lambda: PRESETS, "model.head": lambda: HEADS, "model.exit": lambda: EXITS,
    "loss.variant": lambda: VARIANTS, "loss.pixel": lambda: PIXEL_LOSSES, "data.name": lambda: DATASETS,
}


@pytest.mark.parametrize("key", REGISTRIES)
def test_names_are_those_of_the_registries(key):
    valid = sorted(REGISTRIES[key]())
    for name in valid:
        assert flatten(resolve_config(None, [f"{key}={name}"]))[key] == name
    with pytest.raises(ConfigError, match=f"{key}'.*unknown value 'nope'; valid: {', '.join(valid)}$"):
        resolve_config(None, [f"{key}=nope"])


def test_both_schemas_use_the_names_of_srlib_config():
    run = load_schema()["properties"]
    assert run["data"]["properties"]["supervision"]["enum"] == list(SUPERVISIONS)
    assert run["loss"]["properties"]["regularizer"]["enum"] == [None, *REGULARIZERS]
    assert run["loss"]["properties"]["feature_norm"]["enum"] == list(FEATURE_NORMS)
    assert run["loss"]["properties"]["lal"]["properties"]["window"]["enum"] == list(WINDOWS)
    bench = yaml.safe_load(BENCHMARK_SCHEMA.read_text())["properties"]
    axes = bench["axes"]["properties"]
    schema = yaml.safe_load(BENCHMARK_SCHEMA.read_text())
    assert axes["sr"]["items"] == bench["cost"]["properties"]["sr"]["items"] == {"$ref": "#/$defs/sr_combination"}
    assert schema["$defs"]["sr_combination"]["pattern"] == f"^(all|baseline|{SR_NAME})$"
    assert axes["supervision"]["items"]["pattern"] == (
        f"^({'|'.join(SUPERVISIONS)})(\\+({'|'.join(REGULARIZERS)}))?$")
    assert axes["pixel"]["items"]["pattern"].endswith(f"({re.escape(CENTER_SUFFIX)})?$")
    assert axes["settings"]["propertyNames"]["pattern"] == SETTING_NAME


def test_unknown_preset_lists_valid_names(tmp_path):
    with pytest.raises(ConfigError, match="deeplabv3_resnet18"):
        resolve_config(write(tmp_path, {"model": {"preset": "nope"}}))


def test_missing_file_and_malformed_override_are_named(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml"):
        resolve_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="optim.lr"):
        resolve_config(None, ["optim.lr"])


def test_hash_identifies_what_a_run_computes():
    base = resolve_config({})
    assert config_hash(base) == config_hash(resolve_config({}))
    assert config_hash(base) != config_hash(resolve_config({"seed": 1}))
    # where the data lives and how often a run logs do not change what it computes
    assert config_hash(base) == config_hash(resolve_config({"data": {"root": "/elsewhere"}, "run": {"log_every": 3}}))
    assert config_hash(base) == config_hash(resolve_config({"tracking": {"uri": "http://server:5000"}}))


def test_committed_runs_keep_their_hash_under_keys_added_since():
    # A committed run's config merged over today's defaults (what resolving it again gives) hashes as recorded: keys
    # added since (LATER_KEYS) stay out of the identity while they hold the value that computes what ran then.
    records = sorted((Path(__file__).parents[1] / "results").glob("*/reference_runs/**/metrics.json"))
    assert len(records) >= 72
    for path in records:
        record = json.loads(path.read_text())
        assert config_hash(merge(DEFAULTS, record["config"])) == record["config_hash"], path
    base = resolve_config({"model": {"preset": "unet_mobilenetv2_100"}})
    for (section, key), unchanged in LATER_KEYS.items():
        assert config_hash(base) != config_hash(merge(base, {section: {key: f"not {unchanged}"}})), key


def test_flatten_gives_dotted_keys():
    flat = flatten({"a": 1, "b": {"c": 2, "d": {"e": 3}}})
    assert flat == {"a": 1, "b.c": 2, "b.d.e": 3}


def test_exponent_notation_without_a_dot_is_a_number(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  lr: 1e-3\n  weight_decay: 5E-4\n")
    cfg = resolve_config(path, ["loss.tau=2e0"])
    assert (cfg["optim"]["lr"], cfg["optim"]["weight_decay"], cfg["loss"]["tau"]) == (0.001, 0.0005, 2.0)


def test_auto_settings_are_resolved_so_the_hash_says_what_ran():
    cfg = resolve_config({})
    assert cfg["device"] in ("cpu", "cuda")
    assert cfg["optim"]["amp"] is (cfg["device"] == "cuda")
    assert cfg["optim"]["channels_last"] is (cfg["device"] == "cuda")


def test_keys_added_later_change_the_identity_only_away_from_their_default():
    base = resolve_config({})
    assert config_hash(resolve_config({"model": {"exit_width": 256}})) == config_hash(base)
    assert config_hash(resolve_config({"model": {"exit_width": 64}})) != config_hash(base)
    assert config_hash(resolve_config({"loss": {"feature_norm": "power"}})) != config_hash(base)
