# One job per run. The run directory spells the run's parameters; the job writes run.yaml (the run's
# config fragment), then `srlib run` trains, evaluates and writes metrics.json + outcome.json.
# outcome.json is the only declared output: a training failure (non-finite loss, crash) is recorded
# there as FAILED and shows in the tables; checkpoints live in RUN_DIR/checkpoint/ and are not
# declared, so a killed job resumes where it stopped, and a job killed after metrics.json was written is
# completed by its rerun, never retrained.
# The only config param is the run's identity (config hash of its fragment): editing logging, checkpoint
# or tracking keys never reruns a finished run. Editing what a run computes does rerun the job, and
# `srlib run` then refuses to overwrite the finished result (the error names the run directory): move it
# away, or give the benchmark another `name`, to train the new config. A finished result is never deleted.


rule train:
    input:
        TRACKING_INPUT,
        DATASET_INPUT,
    output:
        f"{RUNS_DIR}/{RUN_PATTERN}/outcome.json",
    log:
        f"{RUNS_DIR}/{RUN_PATTERN}/train.log",
    params:
        run_dir=f"{RUNS_DIR}/{RUN_PATTERN}",
        identity=run_identity,
    threads: RESOURCES["train"]["threads"]
    resources:
        gpu=RESOURCES["train"]["gpu"],
        mem_mb=RESOURCES["train"]["mem_mb"],
        runtime=RESOURCES["train"]["runtime"],
    run:
        Path(params.run_dir).mkdir(parents=True, exist_ok=True)
        Path(params.run_dir, "run.yaml").write_text(run_config_yaml(wildcards))
        shell(
            "echo \"== $(date -Is) $(hostname)\" >> {log:q} && "
            "SRLIB_TRACKING_MARKER={TRACKING_MARKER:q} {PYTHON:q} {GPU_SLOT:q} {resources.gpu} -- "
            "{PYTHON:q} -m srlib run {params.run_dir:q}/run.yaml --out {params.run_dir:q} --outcome {output:q} "
            ">> {log:q} 2>&1"
        )
