# The paper's tables and figures from every run's outcome.json / metrics.json and the cost files.
# The outputs are srlib.report.tables.table_files() (with settings.md for a settings sweep). The report shows
# what a browser displays: each table's HTML page
# (caption workflow/report/<table>.rst, "ablation.html" -> ablation.rst), tables.html and the figures
# ("ablation.png" -> ablation_png.rst); the markdown files are for papers and diffs, not the report.
# With tracking on, the files are also logged to the benchmark's parent MLflow run.


def report_entry(name: str):
    if name.endswith(".md"):
        return f"{BENCH_DIR}/{name}"
    stem = name.removesuffix(".html").replace(".", "_")
    caption = stem if (Path(workflow.basedir) / "workflow" / "report" / f"{stem}.rst").exists() else "table"
    category = "Figures" if name.endswith(".png") else "Tables"
    return report(f"{BENCH_DIR}/{name}", caption=f"../report/{caption}.rst", category=category)


rule tables:
    input:
        outcomes=[f"{run_dir}/outcome.json" for run_dir in RUN_DIRS],
        cost=COST_FILES,
    output:
        [report_entry(name) for name in TABLE_FILES],
    log:
        f"{BENCH_DIR}/logs/tables.log",
    params:
        tracking=TRACKING,
    localrule: True
    script:
        "../scripts/tables.py"
