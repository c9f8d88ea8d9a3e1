"""A sweep's cells: the axes, SR combination names, pixel-axis values, run and cost paths, and the axis values a
run directory, record or config tells. Pure Python: the workflow, the records and the report read it.
"""

from pathlib import Path

from srlib.config import CENTER_SUFFIX, SR_TERMS
AXES = ("dataset", "preset", "pixel", "setting", "sr", "seed")  # in path order
OPTIONAL_AXES = {"setting": ""}  # axis -> a run's value where its benchmark has no such axis
SR_LABELS = {"mea": "MEA", "srf": "SR-F", "srl": "SR-L"}
SR_ORDER = ("baseline", "mea", "mea+srf", "mea+srl", "mea+srf+srl", "srf", "srl", "srf+srl")
FULL_SR = "mea+srf+srl"
COST_AXES = ("dataset", "preset", "exit", "sr")  # what a cost file's path must spell (the pixel loss: its config)


# -- SR combinations ----------------------------------------------------------------------------------
def canonical_sr(name: str) -> str:
    """'baseline' or terms of mea/srf/srl joined by '+' in canonical order: 'srl+mea' -> 'mea+srl'."""
    if name == "baseline":
        return name
    terms = name.split("+")
    if not terms or any(t not in SR_TERMS for t in terms) or len(set(terms)) != len(terms):
        raise ValueError(f"unknown SR combination {name!r}: use 'baseline' or mea, srf, srl joined by '+'")
    return "+".join(t for t in SR_TERMS if t in terms)


def sr_label(name: str) -> str:
    """'mea+srf' -> '+MEA+SR-F' (the paper's row names)."""
    return name if name == "baseline" else "".join(f"+{SR_LABELS[t]}" for t in name.split("+"))


def sr_flags(name: str) -> dict[str, bool]:
    """'mea+srl' -> {"mea": True, "srf": False, "srl": True} (the run config's loss flags)."""
    terms = set(name.split("+"))
    return {term: term in terms for term in SR_TERMS}


def sr_from_flags(loss: dict) -> str:
    """A run config's loss section -> its SR combination name."""
    return "+".join(t for t in SR_TERMS if loss.get(t)) or "baseline"


def run_label(run: dict, varying=()) -> str:
    """A run's short display name (MLflow run name): 'mea+srf+srl · s0', preceded by its values of the
    other axes named in ``varying`` (those with several values in its benchmark): 'focal · baseline · s2'.

    ``run``: {axis: value} with at least "sr" and "seed".
    """
    others = [str(run[axis]) for axis in AXES if axis in varying and axis not in ("sr", "seed") and run.get(axis)]
    return " · ".join([*others, str(run["sr"]), f"s{run['seed']}"])


def sr_rank(name: str) -> tuple:
    """Sort key: table order, unknown names last."""
    return (SR_ORDER.index(name) if name in SR_ORDER else len(SR_ORDER), name)


# -- pixel-loss axis values ---------------------------------------------------------------------------
def pixel_label(loss: dict) -> str:
    """A run config's loss section -> its pixel axis value: 'focal', or 'ce+center' with the center loss."""
    return loss["pixel"] + (CENTER_SUFFIX if loss.get("center") is True else "")


def pixel_flags(label: str) -> dict:
    """Pixel axis value -> run-config loss keys: 'ce+center' -> {"pixel": "ce", "center": True}.

    Without the suffix only ``pixel`` is set, so such run configs stay as they always were.
    """
    name = label.removesuffix(CENTER_SUFFIX)
    return {"pixel": name, "center": True} if name != label else {"pixel": name}


# -- paths --------------------------------------------------------------------------------------------
def run_pattern(axes) -> str:
    """The run directory pattern of a sweep with these axes: 'dataset~{dataset}/.../sr~{sr}/seed~{seed}', with
    'setting~{setting}' before sr~ only when ``axes`` has the setting axis."""
    return "/".join(f"{axis}~{{{axis}}}" for axis in AXES if axis in axes)


def cost_pattern(axes) -> str:
    """The cost file pattern (without .json): one per dataset x preset x pixel loss [x setting] x exit x SR."""
    names = [axis for axis in AXES if axis in axes and axis != "seed"]
    return "/".join(f"{axis}~{{{axis}}}" for axis in [*names[:-1], "exit", names[-1]])


def path_axes(path: str | Path) -> dict[str, str]:
    """{'dataset': 'generated', ...} from a path's key~value segments (a trailing .json is dropped)."""
    parts = Path(str(path).removesuffix(".json")).parts
    return dict(part.split("~", 1) for part in parts if "~" in part)


def config_axes(cfg: dict) -> dict:
    """Axis values a run config implies (for run directories whose path does not spell them); the setting is
    the sweep's ``setting`` tag, '' without one."""
    model = cfg.get("model", {})
    preset = model.get("preset") or f"{model.get('backbone')}_{model.get('head')}"
    setting = ((cfg.get("tracking") or {}).get("tags") or {}).get("setting", OPTIONAL_AXES["setting"])
    return {"dataset": cfg["data"]["name"], "preset": preset, "pixel": pixel_label(cfg["loss"]), "setting": setting,
            "sr": sr_from_flags(cfg["loss"]), "seed": cfg["seed"]}


def run_axes(run_dir: str | Path, known: dict | None) -> dict:
    """A run's axis values: its path's key~value segments, the rest from ``known`` (the axes its record or
    its config tell, see ``config_axes``); an optional axis neither tells is ``OPTIONAL_AXES``' value.

    Returns {dataset, preset, pixel, setting, sr (canonical), seed (int)}; ValueError when neither tells them all.
    """
    axes = path_axes(run_dir)
    if set(AXES) - set(OPTIONAL_AXES) - set(axes):
        if known is None:
            raise ValueError(f"{run_dir}: no key~value path segments and no config to tell its dataset, preset, ...")
        axes = {**known, **axes}
    axes = {**OPTIONAL_AXES, **axes}
    return {**{k: axes[k] for k in AXES}, "sr": canonical_sr(axes["sr"]), "seed": int(axes["seed"])}


def cell_key(cell: dict) -> tuple:
    """A run's or cost job's cell as a hashable key: its values of ``AXES`` and "exit" (as strings; "" where
    absent), e.g. a frame row's or a path's axes."""
    return tuple(str(cell.get(axis, "")) for axis in (*AXES, "exit"))
