"""Statistics over seeds, as the report states them: mean +- half width of the t-interval (default 95 %, n - 1
degrees of freedom); the difference to a reference cell paired by seed (seeds where both runs have a score) and
tested with a two-sided paired t-test, significant below ``ALPHA``; the smallest effect such a test detects.

scipy is imported inside the functions that use it (the workflow imports the report's modules at parse time).
"""

import math

LEVEL = 0.95
ALPHA = 0.05  # significance level of every paired t-test the report marks or judges by
POWER = 0.8  # power at which the claims table states the smallest detectable effect


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


def significant(p: float) -> bool:
    """Whether a paired t-test's p is below ``ALPHA`` (False for no p)."""
    return p < ALPHA


def detectable_effect(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest true mean difference a two-sided paired t-test on ``n`` pairs with difference standard
    deviation ``sd`` detects with probability ``power`` at level ``alpha`` (noncentral t). NaN if n < 2."""
    from scipy import optimize, stats

    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    df = n - 1
    critical = stats.t.ppf(1 - alpha / 2, df)

    def shortfall(effect: float) -> float:
        noncentrality = effect * math.sqrt(n) / sd
        return stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality) - power

    upper = (critical + 4) * sd / math.sqrt(n)
    while shortfall(upper) < 0:  # bracket the root without overflowing nct at huge noncentralities
        upper *= 2
    try:
        return float(optimize.brentq(shortfall, 0.0, upper))
    except ValueError:  # scipy's nct gives NaN on the way (seen at n = 2, df = 1): no estimate
        return math.nan
