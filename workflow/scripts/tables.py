"""Snakemake script of the tables rule: build every table and figure of a benchmark, then (tracking on) log
them to the benchmark's parent MLflow run; a store that cannot be reached is warned about, not fatal."""

import sys
from pathlib import Path

from srlib.report.tables import build_tables

with open(snakemake.log[0], "w") as log:  # noqa: F821 - injected by Snakemake
    sys.stderr = sys.stdout = log
    config, tracking = snakemake.config, snakemake.params.tracking  # noqa: F821
    run_dirs = [Path(path).parent for path in snakemake.input.outcomes]  # noqa: F821
    out_dir = Path(snakemake.output[0]).parent  # noqa: F821
    written = build_tables(run_dirs, out_dir, config, cost_files=snakemake.input.cost)  # noqa: F821
    expected = {Path(path) for path in snakemake.output}  # noqa: F821
    missing = expected - {Path(path) for path in written}
    if missing:
        raise RuntimeError(f"build_tables did not write {sorted(map(str, missing))}")
    print("\n".join(map(str, written)))
    if tracking["enabled"]:
        from srlib.tracking.store import open_sweep

        try:
            run_id = open_sweep(tracking["uri"], tracking["experiment"], config["name"], config.get("description"),
                                written)
            print(f"logged to MLflow run {run_id} ({tracking['uri']}, experiment {tracking['experiment']})")
        except Exception as error:  # noqa: BLE001 - the tables are written; the store is optional
            print(f"WARNING: tables not logged to MLflow ({tracking['uri']}): {type(error).__name__}: {error}",
                  file=sys.__stderr__)
