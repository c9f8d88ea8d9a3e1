"""What a run directory holds, the names of its files, and the points where tests kill a run.

A run directory (``srlib run CONFIG --out RUN_DIR``) holds::

    run.yaml        the config fragment the workflow wrote (workflow runs only)
    config.yaml     the resolved config, written when training starts
    checkpoint/     while training (removed once metrics.json exists): last.pt (``srlib.rundir.checkpoint``),
                    mlflow_opening and mlflow_run_id (``srlib.rundir.mlflow_run``)
    outcome.json    {"status": "FINISHED" | "FAILED", "config_hash", "error": str | null}
                    (``srlib run --outcome``; the workflow's declared output)
    metrics.json    the run record of a finished run, written atomically and last: the source of truth
                    for tables and MLflow imports
    history.jsonl   the metric points the run logged, one JSON object a line: {"step": iteration,
                    "time_ms": when it was measured (ms since the epoch), "metrics": {name: number}}
                    (training losses, lr, validation mIoU on a subset); a point is written once the
                    checkpoint covering its step exists, so a resumed run keeps each step once
    .lock           held (``fcntl.flock``) by the process working in the directory; holds its PID
    per_class_iou.csv, pictures.png, predictions.npz   evaluation artifacts (``srlib.evaluate``)

``metrics.json`` (built by ``srlib.rundir.record.run_record``)::

    status          "FINISHED"
    config_hash     12 hex digits identifying what the run computes (``srlib.identity.config_hash``)
    data_fingerprint  16 hex digits identifying the data it trained and evaluated on, by content
                    (``srlib.data.check.fingerprint``); a run is the same run only on the same data
    config          the resolved run config (``srlib.config.DEFAULTS`` has every key)
    axes            {"dataset", "preset", "pixel", "setting", "sr", "seed"}: the sweep cell
                    (``srlib.sweep.cells.run_axes``; setting '' outside a settings sweep)
    srlib_version, git_commit, tags   code version; tags as logged to MLflow (``srlib.tracking.provenance``)
    threads, device                   where it ran
    classes, palette                  the dataset's class names and RGB colours
    metrics         validation scores, fractions (``srlib.metrics.SegmentationMetrics.compute``); with exits also
                    ``exit<k>_miou`` (k = 1..N, the head last), ``teacher_agreement`` and
                    ``head_accuracy_teacher_wrong`` (``srlib.metrics.ExitAgreement``)
    cost            parameters, MACs / FLOPs (test and train), step time in s, peak memory in MiB
    train           {"iters", "wall_time_s", "final_loss", "final_terms" (the loss terms last logged, gaps
                    included), "eval_time_s", "total_time_s", "finished_at_ms"}

A run's status as tables count it (``RUN_STATUSES``): FINISHED (metrics.json), FAILED (outcome.json says so) or
MISSING (neither: not run yet, or killed).

Kill points (``SRLIB_KILL_AT``, ``srlib.files.kill_point``) in the order a run passes them: ``mlflow-run-created``,
``mlflow-run-id-kept``, ``step:<i>``, ``history-written:<i>``, ``checkpoint:<i>``, ``metrics-written``,
``tracking-finished``, ``checkpoint-removed``; and ``temp-written:<name>`` where ``metrics.json`` or
``outcome.json`` is written but not yet renamed into place.
"""

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.jsonl"
OUTCOME_FILE = "outcome.json"
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "last.pt"  # in CHECKPOINT_DIR
LOCK_FILE = ".lock"
RUN_ID_FILE = "mlflow_run_id"  # in CHECKPOINT_DIR: the MLflow run a resumed or finishing run continues
OPENING_FILE = "mlflow_opening"  # in CHECKPOINT_DIR: a process began opening an MLflow run here
# Files a finished run logs to MLflow as artifacts, when present (train.log: workflow runs only)
RUN_ARTIFACTS = ("config.yaml", "metrics.json", "per_class_iou.csv", "pictures.png", "predictions.npz", "train.log")
RUN_STATUSES = ("FINISHED", "FAILED", "MISSING")  # a run directory's status in tables
