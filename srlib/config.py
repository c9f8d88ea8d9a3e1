"""Run configuration: defaults, YAML loading, ``--set`` overrides, schema validation and the run identity hash.

A run config is a nested dict (see ``DEFAULTS``). ``resolve_config`` merges, in order, the defaults, a YAML
file (or dict) and ``key.sub=value`` overrides, then validates the result against
``srlib/schemas/run.schema.json`` (unknown keys and wrong types are rejected naming the key) and checks
names against the registries (preset, backbone, head, exit, variant, pixel loss, dataset).
"""

import copy
import hashlib
import json
import os
import re
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

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

# Parameters of the embedded generated dataset (``srlib generate-data``, ``srlib.data.synth.generate``).
GENERATE_DEFAULTS = {"seed": 0, "size": 64, "n_train": 2000, "n_val": 500, "n_test": 500,
                     "thin_part_prob": 0.9, "small_object_prob": 0.5}
# The default MLflow store: a SQLite file in the results folder of the working directory (a workflow's).
RESULTS_DIR = "results"
TRACKING_DB_NAME = "mlflow.db"

# Keys that say where or how verbosely a run happens, not what it computes: left out of the identity hash.
NON_IDENTITY_KEYS = (
    ("data", "root"), ("data", "workers"),  # the data stream is seeded per sample, whatever the workers
    ("run", "ckpt_every"), ("run", "log_every"), ("run", "val_every"), ("run", "val_images"), ("run", "cost_steps"),
    ("run", "pictures"), ("tracking",),
)


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


def _check_names(cfg: dict, where: str) -> None:
    """Checks the schema cannot express: names of the model, loss and data registries, and relations between keys."""
    from srlib.data import DATASETS
    from srlib.losses import PIXEL_LOSSES
    from srlib.losses.self_regulation import VARIANTS
    from srlib.models import EXITS, HEADS, PRESETS

    model = cfg["model"]
    checks = [
        ("model.preset", model["preset"], PRESETS),
        ("model.head", model["head"], HEADS),
        ("model.exit", model["exit"], EXITS),
        ("data.name", cfg["data"]["name"], DATASETS),
        ("loss.pixel", cfg["loss"]["pixel"], PIXEL_LOSSES),
        ("loss.variant", cfg["loss"]["variant"], VARIANTS),
    ]
    for key, value, valid in checks:
        if value is not None and value not in valid:
            raise ConfigError(f"{where}: config key {key!r}: unknown value {value!r}; valid: {', '.join(sorted(valid))}")
    if model["preset"] is None and model["backbone"] is None:
        raise ConfigError(f"{where}: give model.preset or model.backbone")
    if model["preset"] is None and model["head"] is None:
        raise ConfigError(f"{where}: model.backbone {model['backbone']!r} needs a model.head ({', '.join(sorted(HEADS))})")
    head = model["head"] or PRESETS[model["preset"]]["head"]
    for key in ("srf_reaches_decoder", "srl_reaches_encoder"):
        if cfg["loss"][key] and not HEADS[head].multi_stage:
            ushape = ", ".join(name for name, cls in sorted(HEADS.items()) if cls.multi_stage)
            raise ConfigError(f"{where}: config key 'loss.{key}' is true but head {head!r} has no decoder blocks "
                              f"(U-shape heads: {ushape})")
    low, high = cfg["data"]["scale_range"]
    if low > high:
        raise ConfigError(f"{where}: config key 'data.scale_range': low {low} is above high {high}")
    if cfg["optim"]["sr_warmup_iters"] >= cfg["optim"]["iters"] and (cfg["loss"]["srf"] or cfg["loss"]["srl"]):
        raise ConfigError(
            f"{where}: config key 'optim.sr_warmup_iters' ({cfg['optim']['sr_warmup_iters']}) must be below "
            f"optim.iters ({cfg['optim']['iters']}) or SR never switches on"
        )


def resolve_config(source: str | Path | dict | None = None, overrides: list[str] = (), check_names: bool = True) -> dict:
    """Defaults <- YAML file or dict <- ``key=value`` overrides; validated. Raises ConfigError naming the key.

    ``check_names=False`` leaves out the registry names (preset, dataset, loss, ...), whose check imports torch:
    enough to compare with a finished run's config hash, which only a config that passed them can match.
    """
    where = str(source) if isinstance(source, (str, Path)) else "config"
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
    if check_names:
        _check_names(cfg, where)
    return resolve_auto(cfg)


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


def _weak_keys_unused(cfg: dict) -> bool:
    """True for a fully supervised run without a regularizer: its weak-supervision keys change nothing."""
    return cfg.get("data", {}).get("supervision", "full") == "full" and cfg.get("loss", {}).get("regularizer") is None


# Weak-supervision keys: added after reference results were recorded, left out of the identity hash of runs
# that do not use them, so those runs keep the hash they had.
WEAK_KEYS = (("data", "supervision"), ("data", "pseudo_noise"), ("loss", "regularizer"), ("loss", "rloss"))


# Keys added after reference results were recorded, with the value that computes what runs computed before them:
# left out of the identity hash while they hold it, so those runs keep their hash.
LATER_KEYS = {("model", "exit_width"): 256, ("loss", "feature_norm"): "softmax",
              ("loss", "srf_reaches_decoder"): False, ("loss", "srl_reaches_encoder"): False}


def identity(cfg: dict) -> dict:
    """What a run computes: a copy of ``cfg`` without NON_IDENTITY_KEYS, WEAK_KEYS for a run that does not use
    them, and LATER_KEYS that hold the value runs computed with before the key existed. Also takes a partial
    config (a sweep's run-config fragment): keys it lacks are skipped."""
    kept = copy.deepcopy(cfg)
    for section, key in WEAK_KEYS if _weak_keys_unused(cfg) else ():
        kept.get(section, {}).pop(key, None)
    for (section, key), unchanged in LATER_KEYS.items():
        if kept.get(section, {}).get(key, unchanged) == unchanged:
            kept.get(section, {}).pop(key, None)
    for *parents, key in NON_IDENTITY_KEYS:
        node = kept
        for part in parents:
            node = node.get(part, {})
        node.pop(key, None)
    return kept


def config_hash(cfg: dict) -> str:
    """12 hex digits identifying what a run computes (``identity``: paths, logging cadence and tracking
    excluded)."""
    text = json.dumps(identity(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def unread_keys(cfg: dict) -> list[str]:
    """The dotted keys of a full run config that its run does not read: what its loss flags, pixel loss, exit
    type and variant leave unused (a baseline reads no exit, SR or SR-weight key; a +MEA run no SR-F key; ...).

    Two runs whose configs differ only in these keys compute the same thing (``reading_hash``). The rules mirror
    ``srlib.losses.self_regulation`` and ``srlib.train.build_model``; a test trains both sides of each rule.
    """
    loss, model = cfg["loss"], cfg["model"]
    mea, srf, srl = loss["mea"], loss["srf"], loss["srl"]
    soft = loss["variant"] in ("paper", "paper-features")
    read = {
        "model.exit": mea or srf or srl,
        "model.min_exit_stride": mea or srf or srl,
        "model.exit_width": (mea or srf or srl) and model["exit"] == "official",
        "loss.variant": mea or srf or srl,
        "loss.w_seg": mea,
        "loss.w_cls": mea,
        "loss.w_srf": srf,
        "loss.w_srl": srl,
        "loss.tau": soft and (srf or srl),
        "loss.feature_dim": srf and loss["variant"] == "paper-features",
        "loss.feature_norm": srf and loss["variant"] == "paper-features",
        "loss.srf_reaches_decoder": srf,
        "loss.srl_reaches_encoder": srl,
        "optim.sr_warmup_iters": srf or srl,
        "loss.focal": loss["pixel"] == "focal",
        "loss.lal": loss["pixel"] == "lal",
        "loss.center_alpha": loss["center"],
        "loss.w_center": loss["center"],
        "loss.rloss": loss.get("regularizer") is not None,
    }
    return [key for key, used in read.items() if not used]


def reading_hash(cfg: dict) -> str:
    """``config_hash`` of what a full run config's run reads: its ``unread_keys`` dropped, and the variant
    ``paper-features`` read as ``paper`` without SR-F (the two differ in SR-F only). Equal for runs that compute
    the same thing, so a sweep trains such runs once."""
    reading = copy.deepcopy(cfg)
    for dotted in unread_keys(cfg):
        section, key = dotted.split(".")
        reading[section].pop(key, None)
    if reading["loss"].get("variant") == "paper-features" and not cfg["loss"]["srf"]:
        reading["loss"]["variant"] = "paper"
    return config_hash(reading)


def identity_changes(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for each key of the ``identity`` whose value differs between two configs, sorted;
    values as JSON (``1`` and ``1.0`` differ, as in the hash), ``(absent)`` where a config lacks the key."""
    before, after = flatten(identity(old)), flatten(identity(new))

    def shown(flat: dict, key: str) -> str:
        return json.dumps(flat[key]) if key in flat else "(absent)"

    return [f"{key}: {shown(before, key)} -> {shown(after, key)}" for key in sorted(before.keys() | after.keys())
            if shown(before, key) != shown(after, key)]


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
