"""The benchmark's tables from run directories: which files there are (``TABLES``, ``TABLE_FILES``) and
``build_tables``, which writes them all as markdown and HTML, with the figures.

The sections come from ``srlib.report.scores`` (ablation, failure modes, per class, exits, run status),
``srlib.report.costs`` (cost) and ``srlib.report.claims``; the figures from ``srlib.report.figures``, the pages
from ``srlib.report.html``. Run directories are read by ``srlib.rundir.record`` (``srlib.rundir.layout`` documents
metrics.json).

The workflow imports ``TABLE_FILES`` at parse time, so pandas, scipy and tabulate are imported inside the
functions that use them.
"""

from pathlib import Path

from srlib.config import flatten
from srlib.files import read_yaml
from srlib.report.claims import claims_sections
from srlib.report.costs import collect_costs, cost_sections, costs_from_runs
from srlib.report.figures import plot_ablation, plot_pictures
from srlib.report.frames import collect_runs
from srlib.report.html import write_page
from srlib.report.scores import (ablation_sections, exits_sections, failure_sections, per_class_sections,
                                 settings_sections, status_sections)
from srlib.report.stats import LEVEL
from srlib.rundir.layout import RUN_STATUSES
from srlib.sweep.benchmark import expand


# The markdown tables: file -> (title, sections(data)). A new table is one function and one entry here.
TABLES = {
    "ablation.md": ("Ablation", ablation_sections),
    "cost.md": ("Cost", cost_sections),
    "failure_modes.md": ("Failure modes", failure_sections),
    "per_class.md": ("Per-class IoU", per_class_sections),
    "claims.md": ("Claims of the paper", claims_sections),
    "exits.md": ("Exits and the SR mechanism", exits_sections),
}
EMPTY = {  # title -> what a table without sections says
    None: "No finished runs.",
    "Exits and the SR mechanism": "No finished run with exits recorded each exit's scores (runs record them since "
                                  "the settings axis was added; earlier records are shown as they were written).",
}
FIGURES = {  # file -> caption in the HTML pages
    "ablation.png": "mIoU per SR combination: bars = mean over seeds, whiskers = 95 % t-interval, dots = seeds; "
                    "n = finished seeds; * = paired t-test against the baseline p < 0.05; dashed line = baseline mean.",
    "pictures.png": "The same validation images under the baseline and +MEA+SR-F+SR-L (same seed); wrong pixels "
                    "outlined in yellow, ignored pixels white; class colours in the key.",
}


def page_name(table_file: str) -> str:
    """Each table's HTML page (what the Snakemake report shows): 'ablation.md' -> 'ablation.html'."""
    return table_file.removesuffix(".md") + ".html"


SETTINGS_TABLES = {"settings.md": ("Settings at a glance", settings_sections)}  # a settings sweep's, first


def table_files(settings: bool = False) -> tuple[str, ...]:
    """What build_tables writes: the markdown tables, their pages, the figures and tables.html (everything on one
    page); with ``settings`` (a settings sweep) also SETTINGS_TABLES and their pages."""
    names = [*(SETTINGS_TABLES if settings else {}), *TABLES]
    return (*names, *map(page_name, names), *FIGURES, "tables.html")


TABLE_FILES = table_files()


def write_markdown(path: Path, title: str, intro: str, sections: list[dict], empty: str = "No finished runs.") -> Path:
    from tabulate import tabulate

    lines = [f"# {title}", "", intro, ""]
    for section in sections:
        lines += [f"## {section['title']}", "", section["caption"], "",
                  tabulate(section["frame"], headers="keys", tablefmt="github", showindex=False,
                           disable_numparse=True), ""]
    if not sections:
        lines += [empty, ""]
    path.write_text("\n".join(lines))
    return path


def _settings_text(bench: dict) -> str:
    """'official = loss.variant: official; paper = ...' from a benchmark's axes.settings."""
    return "; ".join(f"{name} = " + (", ".join(f"{key}: {value}" for key, value in flatten(fragment or {}).items())
                                     or "the base config")
                     for name, fragment in bench["axes"]["settings"].items())


def _served(bench: dict) -> tuple[dict, list[str]]:
    """(served, settings) of a settings sweep (``srlib.sweep.benchmark.expand``): which runs and cost files show
    under which settings, and the settings in the benchmark's order; ({}, []) for any other benchmark."""
    if not (bench.get("axes") or {}).get("settings"):
        return {}, []
    sweep = expand(bench)
    return sweep["served"], sweep["axes"]["setting"]


def _benchmark_dict(benchmark) -> dict:
    if benchmark is None:
        return {}
    if isinstance(benchmark, dict):
        return benchmark
    return read_yaml(benchmark)


def build_tables(runs, out_dir, benchmark=None, *, cost_files=None, pictures: int | None = None,
                 level: float = LEVEL) -> list[Path]:
    """Write TABLE_FILES into ``out_dir`` from run directories; return their paths.

    runs: run directories and/or glob patterns (e.g. "results/default/runs/**/seed~*").
    benchmark: the benchmark config (dict or YAML path) for titles; optional.
    cost_files: ``srlib cost`` JSON files under .../dataset~D/preset~P/exit~E/sr~S.json; None = use the cost
    measured inside the finished runs.
    """
    bench = _benchmark_dict(benchmark)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    served, settings = _served(bench)
    frame = collect_runs(runs, served, settings)
    if frame.empty:
        raise ValueError(f"no run directories in {runs!r}")
    name = bench.get("name", out_dir.name)
    trained = frame.drop_duplicates("run_dir")  # a run shared by several settings counts once
    counts = trained["status"].value_counts()
    summary = (f"Benchmark `{name}`. {bench.get('description', '')} Runs: {len(trained)} "
               f"({', '.join(f'{counts[s]} {s}' for s in RUN_STATUSES if s in counts)}).").replace("  ", " ")
    if settings:
        summary += (f" Settings (each a run-config fragment; a run that reads none of what they change is trained "
                    f"once and shown under each): {_settings_text(bench)}.")
    intro = summary
    failed = frame[frame["status"] == "FAILED"]
    if len(failed):
        intro += "\n\nFailed runs:\n\n" + "\n".join(f"- `{d}`: {e}" for d, e in zip(failed["run_dir"], failed["error"]))
    from_runs = cost_files is None
    costs = costs_from_runs(frame) if from_runs else collect_costs(cost_files, served)
    data = {"runs": frame, "costs": costs, "costs_from_runs": from_runs, "level": level, "settings": settings}
    documents = {file: (title, sections(data))
                 for file, (title, sections) in {**(SETTINGS_TABLES if settings else {}), **TABLES}.items()}
    written = [write_markdown(out_dir / file, f"{title}: {name}", intro, sections, EMPTY.get(title, EMPTY[None]))
               for file, (title, sections) in documents.items()]
    written.append(plot_ablation(frame, out_dir / "ablation.png", level=level))
    count = pictures or bench.get("tables", {}).get("pictures", 6)
    written.append(plot_pictures(frame, out_dir / "pictures.png", count))
    for file, document in documents.items():
        written.append(write_page(out_dir / page_name(file), f"{document[0]}: {name}", summary, [document],
                                  empty=EMPTY))
    status = ("Run status", status_sections(data))
    figures = [(out_dir / file, caption) for file, caption in FIGURES.items()]
    written.append(write_page(out_dir / "tables.html", f"SR-Bench: {name}", summary,
                              [status, *documents.values()], figures, empty=EMPTY))
    return written
