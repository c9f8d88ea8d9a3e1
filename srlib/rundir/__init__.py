"""Everything about a run directory, lowest module first:

- ``layout``: what a run directory holds, its file names, its kill points.
- ``lock``: one process at a time (``lock``), stale temporary files removed.
- ``record``: metrics.json written once and read back, outcome.json, history.jsonl, a run directory read whole.
- ``checkpoint``: what a run keeps to resume, saved and restored.
- ``mlflow_run``: the run's MLflow run (id and opening marker kept beside the checkpoint, ``open_tracker``).
- ``completion``: what a finished run still owes (MLflow summary, checkpoint removal, outcome file), and the
  refusal of another config's results.
- ``importer``: finished run directories imported into MLflow afterwards (``srlib import-runs``).

``record`` and below import neither torch nor MLflow.
"""
