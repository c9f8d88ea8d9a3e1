# One job per run. The run directory spells the run's parameters; the job writes run.yaml (the run's
# config fragment), then `srlib run` trains, evaluates and writes metrics.json + outcome.json.
# outcome.json is the only declared output: a training failure (non-finite loss, crash) is recorded
# there as FAILED and shows in the tables; checkpoints live in RUN_DIR/checkpoint/ and are not
# declared, so a killed job resumes where it stopped. A job that runs deletes the run's metrics.json
# first: Snakemake only reruns a finished run when asked to (-R, -F, changed params), and then the run
# must be recomputed, not read back from the old metrics.json.


rule train:
    input:
        tracking_input,
        dataset_input,
    output:
        f"{RUNS_DIR}/{RUN_PATTERN}/outcome.json",
    log:
        f"{RUNS_DIR}/{RUN_PATTERN}/train.log",
    params:
        run_dir=f"{RUNS_DIR}/{RUN_PATTERN}",
        config=run_config_yaml,
    threads: RESOURCES["train"]["threads"]
    resources:
        gpu=RESOURCES["train"]["gpu"],
        mem_mb=RESOURCES["train"]["mem_mb"],
        runtime=RESOURCES["train"]["runtime"],
    shell:
        "rm -f {params.run_dir:q}/metrics.json && "
        "printf '%s' {params.config:q} > {params.run_dir:q}/run.yaml && "
        "echo \"== $(date -Is) $(hostname)\" >> {log:q} && "
        "{PYTHON:q} {GPU_SLOT:q} {resources.gpu} -- "
        "{PYTHON:q} -m srlib run {params.run_dir:q}/run.yaml --out {params.run_dir:q} --outcome {output:q} "
        ">> {log:q} 2>&1"
