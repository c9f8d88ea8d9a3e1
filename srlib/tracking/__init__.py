"""MLflow tracking for SR-Bench runs, in three modules, lowest first:

- ``provenance``: the tags naming a run's code, machine and config (``run_tags``); torch- and MLflow-free, since
  ``metrics.json`` records them with tracking off too.
- ``store``: the store's location and lock, the experiment created once, a moved SQLite store's artifact locations
  repaired, the benchmark's parent run (``sweep_run``, ``open_sweep``) and the workflow's marker file.
- ``tracker``: one run, fail-soft (``Tracker``, ``open_run``): tracking never stops training.

A run directory's MLflow run (its id kept beside the checkpoint, the finished run's summary, runs imported from
their records afterwards) is ``srlib.rundir``'s.
"""
