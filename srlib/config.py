"""Run configuration, the ground floor of srlib (it imports nothing from srlib): the vocabulary every layer shares,
the defaults, YAML loading, ``--set`` overrides and schema validation.

The vocabulary (``SR_TERMS``, ``VARIANTS``, ``FEATURE_NORMS``, ``PIXEL_LOSS_NAMES``, ``SUPERVISIONS``,
``REGULARIZERS``, ``IGNORE_INDEX``, ...) is torch-free and written here once: the registries (``srlib.losses``,
``srlib.data.weak``), the sweep, the command line and both schemas use these names (``tests/test_config.py``
checks the schemas' enums and patterns against them). A run config is a nested dict (see ``DEFAULTS``); the loss
modules take their parameters' defaults from its ``loss`` section. ``load_config`` merges, in order, the defaults,
a YAML file (or dict) and ``key.sub=value`` overrides, then validates the result against
``srlib/schemas/run.schema.json`` (unknown keys and wrong types are rejected naming the key);
``srlib.registries.resolve_config`` also checks the names against the registries, which needs torch. What a run
computes (its identity hash) is ``srlib.identity``.
"""

import copy
import json
import os
import re
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

# -- the vocabulary ---------------------------------------------------------------------------------
IGNORE_INDEX = 255  # the label value of void pixels in every dataset: no loss, no score; drawn white
SR_TERMS = ("mea", "srf", "srl")  # the Self-Regulation terms: the loss flags, joined by '+' in an SR cell's name
# An SR combination's name in any order (the canonical order is SR_TERMS'), as both schemas and the workflow match it
SR_NAME = "({0})(\\+({0})){{0,2}}".format("|".join(SR_TERMS))
VARIANTS = ("official", "paper", "paper-features")  # how SR is computed (srlib.losses.self_regulation)
FEATURE_NORMS = ("softmax", "power")  # paper-features SR-F: a feature vector as a distribution
PIXEL_LOSS_NAMES = ("ce", "focal", "lal")  # srlib.losses.PIXEL_LOSSES: the ground-truth loss of the head and exits
CENTER_SUFFIX = "+center"  # a pixel axis value with the center loss added (loss.center), e.g. ce+center
SUPERVISIONS = ("full", "pseudo", "scribble")  # training labels (srlib.data.weak)
REGULARIZERS = ("densecrf", "dfr")  # regularized losses on the head's output, for weak labels (srlib.losses.dense_crf)
SCRIBBLE_DATASETS = ("voc_aug", "pascal_context")  # datasets whose ScribbleSup tags `srlib scribbles` reads
# The run record's keys and values, shared by metrics.json, checkpoints, outcome files and MLflow tags
CONFIG_HASH = "config_hash"  # srlib.identity.config_hash of the run's config
DATA_FINGERPRINT = "data_fingerprint"  # srlib.data.check.fingerprint of the data it trained and evaluated on
STATUSES = ("FINISHED", "FAILED", "KILLED")  # terminal statuses of a run (MLflow's)
MEMORY_KINDS = {"cpu_peak_rss": "peak resident memory of the training process (CPU)",  # the cost's memory_kind
                "cuda_max_allocated": "peak GPU memory allocated by PyTorch"}  # (srlib.cost.peak_memory_so_far)

DEFAULTS = {
    "seed": 0,
    "threads": 1,
    "device": "auto",
    "data": {
        "name": "generated",
        "root": "results/data/generated",
        "label_dir": None,
        "supervision": "full",  # full | pseudo | scribble (srlib.data.weak)
        "pseudo_noise": 0.4,    # generated pseudo masks: ~65 % mIoU at 128 px (srlib.data.pseudo)
        "crop_size": 64,
        "scale_range": [0.75, 1.5],
        "flip": True,
        "batch_size": 8,
        "workers": 0,
        "eval_split": "val",
        "eval_window": None,
        "eval_batch_size": 32,
    },
    "model": {
        "preset": "deeplabv3_resnet18",
        "backbone": None,
        "head": None,
        "output_stride": None,
        "exit": "light",
        "exit_width": 256,  # the official exit's conv width (srlib.models.exits)
        "pretrained": None,
        "min_exit_stride": 2,
        "frozen_bn": False,
        "backbone_kwargs": {},
    },
    "loss": {
        "mea": False,
        "srf": False,
        "srl": False,
        "variant": "official",
        "pixel": "ce",
        "center": False,
        "w_seg": 0.8,
        "w_cls": 0.2,
        "w_srf": 1.0,
        "w_srl": 1.0,
        "w_center": 3.0e-4,
        "tau": 1.0,
        "feature_dim": 64,
        "feature_norm": "softmax",  # paper-features SR-F: softmax | power (srlib.losses.self_regulation)
        "srf_reaches_decoder": False,  # U-shape heads: SR-F's students include the decoder exits and the head
        "srl_reaches_encoder": False,  # U-shape heads: SR-L's students include the encoder exits
        "lal": {"window": 5, "k": 3.0},
        "focal": {"alpha": 0.25, "gamma": 2.0},
        "center_alpha": 0.5,
        "regularizer": None,  # None | densecrf | dfr (srlib.losses.dense_crf), on the head's output
        # the published DenseCRF-loss setting (~500 px images): its weight 2e-9 on a per-image sum over a
        # 257 x 257 grid is ~1.3e-4 on our per-pixel mean; stride 4 samples the 2-sigma window every 4 pixels
        "rloss": {"weight": 1.3e-4, "sigma_rgb": 15.0, "sigma_xy": 80.0, "scale": 0.5, "stride": 4,
                  "sigma_feat": 0.5, "feat_dims": 8},
    },
    "optim": {
        "name": "sgd",
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 1.0e-4,
        "head_lr_mult": 10.0,
        "poly_power": 0.9,
        "iters": 1000,
        "sr_warmup_iters": 0,
        "amp": "auto",
        "channels_last": "auto",
    },
    "run": {"ckpt_every": 100, "log_every": 25, "val_every": 100, "val_images": 16, "cost_steps": 10, "pictures": 8},
    # run_name and tags are display-only (MLflow run name, cell tags); the sweep writes them
    "tracking": {"enabled": True, "uri": None, "experiment": "srbench", "run_name": None, "tags": {}},
}

# The default MLflow store: a SQLite file in the results folder of the working directory (a workflow's).
RESULTS_DIR = "results"
TRACKING_DB_NAME = "mlflow.db"

class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; configs mean a number, as YAML 1.2 does."""


# Numbers the config loader reads as floats: exponent notation with or without a dot, and decimals.
CONFIG_FLOAT = re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$|" r"^[-+]?(?:\d[\d_]*)?\.\d*(?:[eE][-+]?\d+)?$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", CONFIG_FLOAT, list("-+0123456789."))


def tracking_uri(configured: str | None = None, results_dir=RESULTS_DIR, *, absolute: bool = True) -> str:
    """MLflow tracking URI: ``configured`` if given, else ``$MLFLOW_TRACKING_URI``, else the SQLite file
    ``<results_dir>/mlflow.db``: ``sqlite:////abs/path/results/mlflow.db``, or when not ``absolute``
    ``sqlite:///results/mlflow.db``, relative to the working directory."""
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    db = Path(results_dir) / TRACKING_DB_NAME
    return f"sqlite:///{db.resolve() if absolute else db.as_posix()}"


def yaml_problem(error: yaml.YAMLError) -> str:
    """One line for a YAML parse error: what is wrong and where ("expected ',' or ']' (line 1, column 3)")."""
    mark = getattr(error, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"{getattr(error, 'problem', None) or error}{where}"


def load_yaml(text: str):
    """Parse config YAML, reading exponent notation without a dot as a number."""
    return yaml.load(text, Loader=_Loader)


class ConfigError(ValueError):
    """A config value is missing, unknown or out of range; the message names the key and the source."""


def load_schema() -> dict:
    return json.loads(resources.files("srlib").joinpath("schemas/run.schema.json").read_text())


def parse_override(text: str) -> tuple[list[str], object]:
    """``"optim.lr=0.1"`` -> (["optim", "lr"], 0.1); the value is parsed as YAML (numbers, bools, null, lists)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key.sub=value")
    try:
        return key.strip().split("."), load_yaml(value)
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {text}: the value is not valid YAML: {yaml_problem(error)}") from None


def merge(base: dict, update: dict) -> dict:
    """Deep merge: nested dicts merge, every other value in ``update`` replaces (copies, inputs untouched)."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _set(cfg: dict, path: list[str], value, where: str) -> None:
    node = cfg
    for i, part in enumerate(path[:-1]):
        if not isinstance(node.get(part), dict):
            raise ConfigError(f"{where}: unknown config key {'.'.join(path[: i + 1])!r}")
        node = node[part]
    if path[-1] not in node:
        raise ConfigError(f"{where}: unknown config key {'.'.join(path)!r}")
    node[path[-1]] = value


# JSON Schema counts 2.0 (and YAML's 2e4) as an integer; counts, sizes, seeds and threads must be ints: whole-number
# floats become ints first (integral_floats_to_ints), any other float on an integer key is refused.
StrictValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)),
)
_VALIDATOR = StrictValidator(load_schema())


def integral_floats_to_ints(target: dict, validator=_VALIDATOR, document: dict | None = None) -> dict:
    """Put the int in place of each whole-number float (2.0, or YAML's 1e3) that ``validator``'s schema wants as an
    integer, in ``target`` itself (returned): the value meant, with the run identity of the int. ``document``: what to
    validate when it is not ``target`` (a fragment merged over the defaults, whose keys sit at the same paths).
    Every other error is left for ``check_schema``."""
    def errors(found):
        for error in found:
            yield error
            yield from errors(error.context or [])  # inside anyOf / oneOf

    for error in list(errors(validator.iter_errors(target if document is None else document))):
        wanted = error.validator_value if error.validator == "type" else ()
        value, path = error.instance, list(error.absolute_path)
        if "integer" in ([wanted] if isinstance(wanted, str) else wanted) and isinstance(value, float) \
                and value.is_integer() and path:
            node = target
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = int(value)
    return target


def check_schema(cfg: dict, where: str, prefix: str = "", validator=_VALIDATOR) -> None:
    """Raise ConfigError for the first unknown key, wrong type or out-of-range value of a full run config
    (or of another document, given its jsonschema ``validator``), after putting in ``cfg`` the int each
    whole-number float on an integer key means (``integral_floats_to_ints``).

    The message starts with ``where`` (the source) and names the key, written with ``prefix`` in front
    (a benchmark file names 'base.optim.lr', not 'optim.lr'); it never dumps the schema.
    """
    integral_floats_to_ints(cfg, validator)
    error = jsonschema.exceptions.best_match(validator.iter_errors(cfg))  # descends into anyOf / oneOf branches
    if error is not None:
        key = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "additionalProperties":
            extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            parent = f"{prefix}{key}." if key else prefix
            names = ", ".join(repr(parent + name) for name in extra)
            raise ConfigError(f"{where}: unknown config key {names}")
        raise ConfigError(f"{where}: config key {prefix + key if key else prefix or '<top level>'!r}: {error.message}"
                          f"{_type_hint(error)}")


def _type_hint(error: jsonschema.ValidationError) -> str:
    """How to write the number a type error's value was probably meant to be ('' when no hint applies)."""
    if error.validator != "type":
        return ""
    value = error.instance
    if not (isinstance(value, str) and CONFIG_FLOAT.match(value)):  # Snakemake's YAML 1.1 loader: 1e-3 -> "1e-3"
        return ""
    try:
        return f" (YAML 1.1 reads {value} as text: write it with a dot, e.g. {float(value)!r})"
    except ValueError:  # matched, but no number: "e5", "."
        return ""


def source_name(source: str | Path | dict | None) -> str:
    """How messages name a config's source: its path, or 'config' for a dict."""
    return str(source) if isinstance(source, (str, Path)) else "config"


def load_config(source: str | Path | dict | None = None, overrides: list[str] = ()) -> dict:
    """Defaults <- YAML file or dict <- ``key=value`` overrides, validated against the schema (names are not checked
    against the registries: ``srlib.registries.resolve_config`` does, and that imports torch; ``auto`` is left for
    ``resolve_auto``). Raises ConfigError naming the key."""
    where = source_name(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = load_yaml(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {yaml_problem(error)}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys, got {type(loaded).__name__}")
    else:
        loaded = source or {}
    cfg = merge(DEFAULTS, loaded)
    for text in overrides:
        path, value = parse_override(text)
        _set(cfg, path, value, f"--set {text}")
    check_schema(cfg, where if not overrides else f"{where} with --set {' '.join(overrides)}")
    return cfg


def resolve_auto(cfg: dict) -> dict:
    """Replace ``auto`` by what it means on this machine (device; AMP and channels-last on CUDA only),
    so the resolved config, and so the run identity, says what actually ran."""
    cfg = copy.deepcopy(cfg)
    if cfg["device"] == "auto":
        import torch  # only here: a config naming its device resolves without torch

        cfg["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    for key in ("amp", "channels_last"):
        if cfg["optim"][key] == "auto":
            cfg["optim"][key] = cfg["device"] == "cuda"
    return cfg


def flatten(cfg: dict, prefix: str = "") -> dict:
    """Nested dict -> {"optim.lr": 0.01, ...} (for MLflow params and tables)."""
    flat = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
