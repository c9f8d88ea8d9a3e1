"""Snakemake script of the tables rule: build every table and figure of a benchmark."""

import sys
from pathlib import Path

from srlib.tables import build_tables

with open(snakemake.log[0], "w") as log:  # noqa: F821 - injected by Snakemake
    sys.stderr = sys.stdout = log
    run_dirs = [Path(path).parent for path in snakemake.input.outcomes]  # noqa: F821
    out_dir = Path(snakemake.output[0]).parent  # noqa: F821
    written = build_tables(run_dirs, out_dir, snakemake.config, cost_files=snakemake.input.cost)  # noqa: F821
    expected = {Path(path) for path in snakemake.output}  # noqa: F821
    missing = expected - {Path(path) for path in written}
    if missing:
        raise RuntimeError(f"build_tables did not write {sorted(map(str, missing))}")
    print("\n".join(map(str, written)))
