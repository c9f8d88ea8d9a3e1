# The paper's tables and figures from every run's outcome.json / metrics.json and the cost files.


rule tables:
    input:
        outcomes=[f"{run_dir}/outcome.json" for run_dir in RUN_DIRS],
        cost=COST_FILES,
    output:
        ablation=report(f"{BENCH_DIR}/ablation.md", caption="../report/ablation.rst", category="Tables"),
        cost=report(f"{BENCH_DIR}/cost.md", caption="../report/cost.rst", category="Tables"),
        failure_modes=report(
            f"{BENCH_DIR}/failure_modes.md", caption="../report/failure_modes.rst", category="Tables"
        ),
        per_class=report(f"{BENCH_DIR}/per_class.md", caption="../report/per_class.rst", category="Tables"),
        ablation_png=report(f"{BENCH_DIR}/ablation.png", caption="../report/ablation_png.rst", category="Figures"),
        pictures_png=report(f"{BENCH_DIR}/pictures.png", caption="../report/pictures.rst", category="Figures"),
        html=report(f"{BENCH_DIR}/tables.html", caption="../report/tables_html.rst", category="Tables"),
    log:
        f"{BENCH_DIR}/logs/tables.log",
    localrule: True
    script:
        "../scripts/tables.py"
