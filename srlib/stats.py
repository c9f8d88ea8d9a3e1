"""Statistics over seeds, as the tables report them, and over timing rounds, as the benchmarks report them.

Mean +- half width of the t-interval (default 95 %, n - 1 degrees of freedom); the difference to the
baseline is paired by seed (seeds where both runs have a score) and tested with a two-sided paired t-test.
A timing ratio is the median of per-round ratios with their interquartile range (``ratio_spread``).
"""

import math
import statistics

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


def ratio_spread(numerators, denominators) -> dict:
    """Ratios of paired measurements, e.g. two configurations timed in the same interleaved round:
    {"median", "q1", "q3", "n"} of ``numerators[i] / denominators[i]`` (quartiles by linear interpolation
    between the ratios, the inclusive method; q1 = q3 = median for one round)."""
    ratios = sorted(a / b for a, b in zip(numerators, denominators, strict=True))
    if not ratios:
        raise ValueError("ratio_spread needs at least one pair")
    q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
    return {"median": median, "q1": q1, "q3": q3, "n": len(ratios)}


def format_spread(spread: dict, digits: int = 3) -> str:
    """'1.234x (IQR 1.201-1.260, 15 rounds)' from ``ratio_spread``'s dict."""
    return (f"{spread['median']:.{digits}f}x (IQR {spread['q1']:.{digits}f}-{spread['q3']:.{digits}f}, "
            f"{spread['n']} rounds)")
