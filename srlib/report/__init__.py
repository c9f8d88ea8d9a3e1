"""The benchmark's report from its run directories: markdown and HTML tables, the claims table and the figures.

Modules, lowest first: ``format`` (how intervals, p-values, ratios and units are written), ``stats`` (t-intervals,
the paired t-test, significance, detectable effects), ``frames`` (run directories as a pandas frame, grouped and
paired by seed), ``scores`` (ablation, failure modes, per class, exits, run status), ``costs`` (cost records and
the cost table), ``claims`` (each claim of the paper with a verdict), ``figures`` (the ablation chart and the
picture grid), ``html`` (the pages), ``tables`` (which files, and ``build_tables``, which writes them all).
"""
