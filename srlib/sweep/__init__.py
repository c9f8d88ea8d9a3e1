"""The sweep in plain Python, in three modules: ``cells`` (axes, SR cell names, pixel-axis values, run and cost
paths), ``run_configs`` (each run's and cost job's config) and ``benchmark`` (a benchmark file checked and expanded).

A benchmark file (``benchmarks/<name>.yaml``, schema ``workflow/schemas/config.schema.yaml``) is one sweep.
Its runs are the Cartesian product of the axes ``cells.AXES``; each run is identified by its directory, which
spells its axis values (``cells.run_pattern``)::

    results/<bench>/runs/dataset~<id>/preset~<preset>/pixel~<loss>/sr~<combo>/seed~<seed>/

and its run config is ``base`` <- its dataset's ``config`` <- its setting's fragment <- matching ``overrides``
<- the axis values. The axes own the run-config keys in ``benchmark.OWNED_KEYS``; a fragment may not set them.

Settings (``axes.settings``, optional): named run-config fragments, e.g. ``{official: {loss: {variant:
official}}, paper: {...}}``, each a value of the axis ``setting`` (path segment ``setting~<name>`` before
``sr~``; a benchmark without the axis keeps its paths and run configs exactly). Cells of different settings
that read the same config (``srlib.identity.reading_hash``: a baseline reads no SR key, a cell without exits no
exit key) are trained once, in the directory of the first such setting, and serve every one of them
(``benchmark.expand``'s ``served``): the tables show that run under each setting it serves.

Axis values: ``sr`` is ``baseline`` or the terms mea / srf / srl joined by '+' (canonical order, table
order ``cells.SR_ORDER``); ``pixel`` is a ``srlib.losses.PIXEL_LOSSES`` name, with ``+center`` for that loss plus
the center loss (``loss.center: true``).

Weak supervision (``axes.supervision``, optional): values ``full``, ``pseudo``, ``scribble``, each optionally
with ``+densecrf`` or ``+dfr`` (the regularized loss; ``srlib.config.SUPERVISIONS``, ``REGULARIZERS``). The axis is
crossed with the dataset axis: every (dataset, supervision) pair becomes a dataset id ``<id>@<supervision>``
(``dataset~generated@scribble+densecrf/...``), so each is one column of the tables, and its runs set
``data.supervision`` and ``loss.regularizer``. A benchmark without the axis has plain dataset ids and no
supervision keys in its run paths and run configs. Real datasets read weak labels from their entry's ``pseudo_dir`` /
``scribble_dir`` (as ``data.label_dir``); the generated dataset makes them (``srlib.data.weak``).

Snakemake parses this for every invocation (and every cluster job), so it imports no torch, pandas or
scipy and does O(runs) dict work only; ``workflow/rules/common.smk`` is thin glue over ``benchmark.expand``.
"""
