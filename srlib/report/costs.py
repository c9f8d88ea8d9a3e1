"""The cost table and the cost records it (and the claims table) reads: parameters, multiply-adds, step time and
memory of each SR combination against its baseline.

Cost records come from ``srlib cost`` JSON files (``collect_costs``, their axes read from their paths) or, without
them, from the cost each finished run measured (``costs_from_runs``).
"""

from pathlib import Path

from srlib.config import MEMORY_KINDS
from srlib.files import read_json
from srlib.report.format import iqr, si, times
from srlib.report.frames import config_value, group_title, groups, order_settings, serve_settings
from srlib.sweep.cells import COST_AXES, canonical_sr, path_axes, pixel_label, sr_label, sr_rank


COST_KEYS = ("params_test", "params_train", "step_time_s")  # what every srlib cost file holds


def collect_costs(cost_files, served: dict | None = None) -> list[dict]:
    """Cost JSON files (``srlib cost`` output) -> records with axes from their path (dataset, preset, [setting,]
    exit, sr); with ``served``, one record per setting a file serves (``srlib.report.frames.serve_settings``)."""
    records = []
    for path in map(Path, cost_files):
        axes = path_axes(path)
        missing = set(COST_AXES) - set(axes)
        if missing:
            raise ValueError(f"{path}: path has no {sorted(missing)} key~value segments")
        cost = read_json(path)
        absent = [key for key in COST_KEYS if key not in cost] if isinstance(cost, dict) else list(COST_KEYS)
        if absent:
            raise ValueError(f"{path}: not a cost file (srlib cost output): no {', '.join(map(repr, absent))}")
        loss = config_value(cost.get("config"), "loss")
        pixel = pixel_label(loss) if loss else "ce"  # the pixel loss the cost job trained with
        records.append({**axes, "sr": canonical_sr(axes["sr"]), "pixel": pixel, **cost, "source": str(path)})
    return serve_settings(records, served or {})


def costs_from_runs(frame) -> list[dict]:
    """Fallback when no cost files: the cost measured inside finished runs, first seed per combination."""
    records = []
    for key, group in groups(frame[frame["status"] == "FINISHED"], ["dataset", "preset", "pixel", "sr"]):
        first = group.sort_values("seed").iloc[0]
        exit_type = "none" if key["sr"] == "baseline" else str(config_value(first["config"], "model.exit"))
        records.append({**key, "exit": exit_type, **first["result"].get("cost", {}), "source": first["run_dir"]})
    return records


def _peak_mib(record: dict):
    if record.get("peak_memory_mib") is not None:
        return record["peak_memory_mib"]
    return None if record.get("peak_bytes") is None else record["peak_bytes"] / 2**20


COST_COLUMNS = (  # (header, getter, unit)
    ("params test", lambda r: r.get("params_test"), ""),
    ("params train", lambda r: r.get("params_train"), ""),
    ("MACs test", lambda r: r.get("macs_test"), "MAC"),
    ("MACs train", lambda r: r.get("macs_train"), "MAC"),
    ("FLOPs test", lambda r: r.get("flops_test", 2 * r["macs_test"] if r.get("macs_test") else None), "FLOP"),
    ("FLOPs train", lambda r: r.get("flops_train", 2 * r["macs_train"] if r.get("macs_train") else None), "FLOP"),
    ("step time", lambda r: r.get("step_time_s"), "s"),
    ("peak memory", _peak_mib, "MiB"),
    ("step tensor memory", lambda r: r.get("step_tensor_memory_mib"), "MiB"),
)


def cost_sections(data: dict) -> list[dict]:
    """One table per dataset x preset x pixel loss: rows = exit type x SR combination, each value with its
    ratio to that pixel loss's baseline."""
    import pandas as pd

    records, from_runs = data["costs"], data["costs_from_runs"]
    if not records:
        return []
    sections = []
    frame = pd.DataFrame(records)
    if "setting" in frame:
        frame = order_settings(frame, data.get("settings", ()))
    for key, group in groups(frame, ["dataset", "preset", "pixel"]):
        rows = group.to_dict("records")
        rows.sort(key=lambda r: (r["sr"] != "baseline", str(r["exit"]), sr_rank(r["sr"])))
        base = next((r for r in rows if r["sr"] == "baseline"), None)
        table = []
        for record in rows:
            row = {"exit": record["exit"], "SR": sr_label(record["sr"])}
            for header, getter, unit in COST_COLUMNS:
                value, ref = getter(record), getter(base) if base is not None else None
                ratio = f" ({times(value / ref)})" if value is not None and ref else ""
                spread = record.get("step_time_ratio") if header == "step time" else None
                if isinstance(spread, dict):  # a frame gives NaN to the rows without one
                    ratio = f" ({times(spread['median'])}, {iqr(spread)})"
                row[header] = si(value, unit) + ratio
            table.append(row)
        def distinct(*keys):
            values = {str(next((r[k] for k in keys if r.get(k) is not None), "n/a")) for r in rows}
            return ", ".join(sorted(values))

        caption = (
            "MACs = multiply-accumulates of convolutions and matrix products in one forward pass (the fvcore "
            "convention); FLOPs = 2 × MACs; counted with torch.utils.flop_counter on input "
            f"{distinct('flop_input_shape')}. Test = the inference model (backbone + decoder head, what is deployed); "
            "train = with exits, classifiers and projections. Step time = median training step (forward, loss, "
            f"backward, update) after warm-up at batch {distinct('step_time_batch')}; peak memory: "
            f"{', '.join(MEMORY_KINDS.get(kind, kind) for kind in distinct('memory_kind', 'kind').split(', '))}; "
            "step tensor memory: the peak of the tensors one training step allocates and holds at once "
            "(activations, gradients, temporaries; not the weights, optimizer state or batch that exist before it): "
            "what the method itself needs (CPU: PyTorch profiler allocation events; CUDA: max_memory_allocated; "
            "– = not measured). "
            "(×r) = ratio to the baseline row; for step time, where the row gives an IQR, the median of per-round "
            "ratios over interleaved rounds (one baseline step and one step of the row's config per round, in one "
            "process) and their interquartile range. "
            + ("Measured inside the training runs (first seed), concurrently with other jobs."
               if from_runs else "Measured by the cost rule (`srlib cost`), one job per row.")
        )
        sections.append({"title": group_title(key), "caption": caption,
                         "frame": pd.DataFrame(table)})
    return sections
