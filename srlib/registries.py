"""A run config resolved for training: loaded and validated (``srlib.config.load_config``), its names checked
against the registries (presets, heads, exits, datasets, pixel losses, variants), ``auto`` resolved.

The registries are torch modules: a caller that only compares a finished run's config hash uses
``srlib.config.load_config`` and ``resolve_auto`` instead, which a config that passed these checks matches.
"""

from pathlib import Path

from srlib.config import VARIANTS, ConfigError, load_config, resolve_auto, source_name
from srlib.data import DATASETS
from srlib.losses import PIXEL_LOSSES
from srlib.models import EXITS, HEADS, PRESETS


def resolve_config(source: str | Path | dict | None = None, overrides: list[str] = ()) -> dict:
    """Defaults <- YAML file or dict <- ``key=value`` overrides; validated, names checked (``check_names``), ``auto``
    resolved (``srlib.config.resolve_auto``). Raises ConfigError naming the key."""
    cfg = load_config(source, overrides)
    check_names(cfg, source_name(source))
    return resolve_auto(cfg)


def check_names(cfg: dict, where: str) -> None:
    """Raise ConfigError, starting with ``where``, for what the schema cannot express: a name unknown to the model,
    loss or data registries, and a bad relation between keys (no model, SR switched on never, ...)."""
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
            raise ConfigError(f"{where}: config key {key!r}: unknown value {value!r}; "
                              f"valid: {', '.join(sorted(valid))}")
    if model["preset"] is None and model["backbone"] is None:
        raise ConfigError(f"{where}: give model.preset or model.backbone")
    if model["preset"] is None and model["head"] is None:
        raise ConfigError(f"{where}: model.backbone {model['backbone']!r} needs a model.head "
                          f"({', '.join(sorted(HEADS))})")
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
