"""Statistics over seeds, as the tables report them.

Mean +- half width of the t-interval (default 95 %, n - 1 degrees of freedom); the difference to the
baseline is paired by seed (seeds where both runs have a score) and tested with a two-sided paired t-test.
"""

import math

LEVEL = 0.95


def mean_ci(values, level: float = LEVEL) -> tuple[float, float, int]:
    """(mean, half width of the t confidence interval, n) of the finite values; half width NaN if n < 2."""
    import numpy as np
    from scipy import stats

    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(data)
    if n == 0:
        return math.nan, math.nan, 0
    if n < 2:
        return float(data[0]), math.nan, 1
    sem = data.std(ddof=1) / math.sqrt(n)
    return float(data.mean()), float(stats.t.ppf(0.5 + level / 2, n - 1) * sem), n


def paired_difference(treated: dict, baseline: dict, level: float = LEVEL) -> dict:
    """treated - baseline over the seeds both have: {"mean", "half", "p", "n"} (p: paired t-test).

    ``treated`` and ``baseline`` map seed -> score (None = no score). p is NaN for n < 2 or when every
    difference is the same (no variance to test).
    """
    import numpy as np
    from scipy import stats

    seeds = sorted(s for s in set(treated) & set(baseline) if treated[s] is not None and baseline[s] is not None)
    a = np.array([treated[s] for s in seeds], dtype=float)
    b = np.array([baseline[s] for s in seeds], dtype=float)
    mean, half, n = mean_ci(a - b, level)
    p = math.nan
    if n >= 2 and np.ptp(a - b) > 0:
        p = float(stats.ttest_rel(a, b).pvalue)
    return {"mean": mean, "half": half, "p": p, "n": n}
