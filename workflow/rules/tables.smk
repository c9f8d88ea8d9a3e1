# The paper's tables and figures from every run's outcome.json / metrics.json and the cost files.
# The outputs are srlib.tables.TABLE_FILES; each has a report caption workflow/report/<file>.rst
# ("ablation.md" -> ablation.rst, "ablation.png" -> ablation_png.rst), else the generic table.rst.


def report_entry(name: str):
    stem = name.removesuffix(".md").replace(".", "_")
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
    localrule: True
    script:
        "../scripts/tables.py"
