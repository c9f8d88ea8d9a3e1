# Once-only preparation: the MLflow store + experiment, and the embedded generated dataset.


rule init_tracking:
    """Create the MLflow store, the experiment (described) and the benchmark's parent run once, before any
    training job (parallel runs must not race)."""
    output:
        TRACKING_MARKER,
    log:
        f"{BENCH_DIR}/logs/init_tracking.log",
    params:
        uri=TRACKING["uri"],
        experiment=TRACKING["experiment"],
        benchmark=SWEEP["name"],
        description=config.get("description") or "",
    localrule: True
    shell:
        "{PYTHON:q} -m srlib init-tracking --uri {params.uri:q} --experiment {params.experiment:q} "
        "--benchmark {params.benchmark:q} --description={params.description:q} --marker {output:q} > {log:q} 2>&1"


rule generate_data:
    """The embedded failure-mode dataset, written once per parameter set (its path spells them)."""
    output:
        directory(GENERATED_PATTERN),
    log:
        f"{GENERATED_PATTERN}.log",
    threads: 4
    localrule: True
    shell:
        "{PYTHON:q} -m srlib generate-data --root {output:q} --size {wildcards.size} "
        "--n-train {wildcards.n_train} --n-val {wildcards.n_val} --n-test {wildcards.n_test} "
        "--seed {wildcards.seed} --workers {threads} --grid {output:q}/samples.png > {log:q} 2>&1"
