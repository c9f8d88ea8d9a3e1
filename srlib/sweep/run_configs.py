"""Each run's config fragment (``srlib run`` adds the defaults and validates it) and each cost job's, from an
expanded sweep (``srlib.sweep.benchmark.expand``): base <- the dataset's config <- the setting's fragment <- the
matching overrides <- the keys the axes own.
"""

from srlib.config import merge
from srlib.sweep.cells import cell_key, pixel_flags, run_label, sr_flags


def matching_overrides(sweep: dict, run: dict) -> tuple[int, ...]:
    """Indices of the overrides whose `where` matches ``run`` (axis values as strings)."""
    return tuple(i for i, rule in enumerate(sweep["overrides"])
                 if all(run[axis] in values for axis, values in rule["where"].items()))


def group_config(sweep: dict, dataset: str, matching: tuple[int, ...], setting: str = "") -> dict:
    """base <- the dataset's config <- the setting's fragment <- the overrides ``matching``; the same for every
    run of that group."""
    cfg = merge(sweep["base"], sweep["datasets"][dataset]["config"])
    if setting:
        cfg = merge(cfg, sweep["settings"][setting])
    for i in matching:
        cfg = merge(cfg, sweep["overrides"][i]["config"])
    return cfg


def fixed_config(sweep: dict, run: dict) -> dict:
    """The run-config keys the axes own (``srlib.sweep.benchmark.OWNED_KEYS``), for one run."""
    entry = sweep["datasets"][run["dataset"]]
    data = {"name": entry["name"], "root": entry["root"], "label_dir": entry["label_dir"]}
    loss = {**pixel_flags(run["pixel"]), **sr_flags(run["sr"])}
    if "supervision" in entry:  # only under axes.supervision, so other benchmarks' run configs stay as they were
        data["supervision"], loss["regularizer"] = entry["supervision"], entry["regularizer"]
    return {
        "seed": int(run["seed"]),
        "threads": sweep["resources"]["train"]["threads"],
        "data": data,
        "model": {"preset": run["preset"]},
        "loss": loss,
        "tracking": {**sweep["tracking"], **tracking_labels(sweep, run)},
    }


def tracking_labels(sweep: dict, run: dict) -> dict:
    """Display-only tracking keys of one run: ``run_name`` (``run_label`` over the axes that vary in the
    sweep) and ``tags`` {benchmark, one per axis of the sweep; in a settings sweep "serves": the settings
    whose tables show the run, comma-separated} (MLflow groups runs by these)."""
    varying = [axis for axis in sweep["axes"] if len(sweep["axes"][axis]) > 1]
    tags = {"benchmark": sweep["name"], **{axis: str(run[axis]) for axis in sweep["axes"]}}
    serves = (sweep.get("served") or {}).get(cell_key(run))
    if serves:
        tags["serves"] = ",".join(serves)
    return {"run_name": run_label(run, varying), "tags": tags}


def run_config(sweep: dict, run: dict, group: dict | None = None) -> dict:
    """The run-config fragment of one run (``srlib run`` adds the defaults and validates it).

    ``group``: its ``group_config``, when the caller has it cached.
    """
    if group is None:
        group = group_config(sweep, run["dataset"], matching_overrides(sweep, run), run.get("setting", ""))
    return merge(group, fixed_config(sweep, run))


def cost_config(sweep: dict, cost: dict) -> dict:
    """Config measured by the cost rule for ``cost`` ({dataset, preset, pixel, [setting,] exit, sr}): the
    sweep's first seed, tracking off."""
    run = {**{axis: value for axis, value in cost.items() if axis != "exit"}, "seed": sweep["axes"]["seed"][0]}
    cfg = run_config(sweep, run)
    cfg["tracking"]["enabled"] = False
    if cost["exit"] != "none":
        cfg["model"]["exit"] = cost["exit"]
    return cfg
