# Overhead of each SR combination against its baseline, per dataset (crop, classes) x preset x pixel loss x exit
# type: parameters and multiply-adds at test and training time, step time and peak memory (`srlib cost`).


rule cost:
    input:
        DATASET_INPUT,
    output:
        f"{BENCH_DIR}/cost/{COST_PATTERN}.json",
    log:
        f"{BENCH_DIR}/cost/{COST_PATTERN}.log",
    params:
        config_path=f"{BENCH_DIR}/cost/{COST_PATTERN}.yaml",
        identity=cost_identity,
    threads: RESOURCES["cost"]["threads"]
    resources:
        gpu=RESOURCES["cost"]["gpu"],
        mem_mb=RESOURCES["cost"]["mem_mb"],
        runtime=RESOURCES["cost"]["runtime"],
    run:
        Path(params.config_path).parent.mkdir(parents=True, exist_ok=True)
        Path(params.config_path).write_text(cost_config_yaml(wildcards))
        shell(
            "{PYTHON:q} {GPU_SLOT:q} {resources.gpu} -- "
            "{PYTHON:q} -m srlib cost {params.config_path:q} --out {output:q} > {log:q} 2>&1"
        )
