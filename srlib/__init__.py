"""SR-Bench library: multi-exit segmentors, Self-Regulation losses, data, metrics, runs and their report.

Layers, lowest first (a module imports only from its own layer and those below; ``.ci/architecture.py`` checks it):
``config`` (the vocabulary and every default; imports nothing from srlib); ``files``, ``identity``, ``palette``,
``wiring``, ``compat``; the domain: ``data``, ``models``, ``losses``, ``metrics``, ``inference``, ``cost``,
``pictures``, ``sweep``; ``tracking`` (MLflow); ``rundir`` (everything about a run directory); ``registries``,
``evaluate``, ``train`` (one run); ``report`` (tables, claims, figures); ``cli``.
"""

__version__ = "0.1.0"
