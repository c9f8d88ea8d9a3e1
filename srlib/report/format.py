"""How the report writes numbers and names: every interval, p-value, ratio and unit of the tables, claims and
figures comes from here, so each is written one way.

- ``interval``: a mean and the half width of its confidence interval, '38.0 ± 1.9' (scores and differences in
  percent, effects in points, gaps as plain numbers); an unsigned score's interval reaching past 0 or 100 % is
  shown clipped, '2.7 (0.0–13.3)' (``CLIPPED`` says so in captions).
- ``p_value``: three decimals, in one of two named styles for what lies below 0.001: ``EXACT`` writes it
  ('1.0e-04', the ablation tables' Δ column; 'n/a' when there is no p) and ``BOUNDED`` bounds it ('<0.001', the
  claims table's p column; '–' when there is none). Each committed table keeps the style it was written in.
- ``times`` and ``iqr``: a ratio to the baseline, '×1.234', and the interquartile range of per-round ratios,
  'IQR 1.201–1.260'; ``console_spread`` writes a spread for a terminal ('1.234x (IQR 1.201-1.260, 15 rounds)',
  the benchmark scripts' output).
- ``si``: a count with an SI prefix ('1.5 GMAC'), MiB or seconds.
"""

import math

EXACT, BOUNDED = "exact", "bounded"  # the two styles of p_value
CLIPPED = "an interval reaching past 0 or 100 % is shown clipped to them as (low–high)"
FAILURE_METRICS = {  # record metric -> its name in tables and figures: the paper's two failures
    "thin_part_iou": "thin-part IoU",
    "body_iou": "body IoU",
    "small_object_iou": "small-object IoU",
    "hallucination_rate": "hallucinated-class rate",
}
METRIC_NAMES = {"miou": "mIoU", "pixel_accuracy": "pixel accuracy", **FAILURE_METRICS}  # every record metric's name


def interval(mean: float, half: float, *, scale: float = 100.0, digits: int = 1, signed: bool = False,
             clip: bool = False, no_half: str = "", unit: str = "") -> str:
    """``mean`` ± ``half`` (both multiplied by ``scale``: 100 turns fractions into percent or points), ``digits``
    decimals, a '+' on positive means when ``signed``, then ``unit``: '38.0 ± 1.9', '+1.2 ± 0.5 points'. '–' for a
    mean that is not a number; ``no_half`` in place of ' ± h' when the half width is not one (one seed). With
    ``clip`` (fractions in [0, 1]) an interval reaching past 0 or 1 is written '(low–high)' clipped to them."""
    if not math.isfinite(mean):
        return "–"
    text = f"{scale * mean:{'+' if signed else ''}.{digits}f}"
    if not math.isfinite(half):
        return text + no_half + unit
    low, high = mean - half, mean + half
    if clip and (low < 0 or high > 1):
        return f"{text} ({scale * max(low, 0.0):.{digits}f}–{scale * min(high, 1.0):.{digits}f}){unit}"
    return f"{text} ± {scale * half:.{digits}f}{unit}"


def percent(mean: float, half: float, signed: bool = False) -> str:
    """A fraction's mean and interval half width in percent, as the score tables write them: '38.0 ± 1.9', an
    unsigned score clipped to 0..100 % ('2.7 (0.0–13.3)'), '38.0 ± n/a' for one seed, '–' for none."""
    return interval(mean, half, signed=signed, clip=not signed, no_half=" ± n/a")


def p_value(p: float, style: str = EXACT) -> str:
    """A two-sided p-value with three decimals; below 0.001 written by ``style``: ``EXACT`` '1.0e-04' (and 'n/a'
    for no p), ``BOUNDED`` '<0.001' (and '–' for no p)."""
    if not math.isfinite(p):
        return "n/a" if style == EXACT else "–"
    if p >= 0.001:
        return f"{p:.3f}"
    return f"{p:.1e}" if style == EXACT else "<0.001"


def times(value: float) -> str:
    """A ratio to the baseline: '×1.234'."""
    return f"×{value:.3f}"


def iqr(spread: dict) -> str:
    """The interquartile range of per-round ratios (``srlib.cost.ratio_spread``'s dict): 'IQR 1.201–1.260'."""
    return f"IQR {spread['q1']:.3f}–{spread['q3']:.3f}"


def console_spread(spread: dict, digits: int = 3) -> str:
    """'1.234x (IQR 1.201-1.260, 15 rounds)' from ``srlib.cost.ratio_spread``'s dict, in plain ASCII for terminals."""
    return (f"{spread['median']:.{digits}f}x (IQR {spread['q1']:.{digits}f}-{spread['q3']:.{digits}f}, "
            f"{spread['n']} rounds)")


def si(value, unit: str) -> str:
    """1.5e9, "MAC" -> '1.5 GMAC'; mebibytes stay in MiB, seconds have three decimals; '–' for no value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    if unit == "s":
        return f"{value:.3f} s"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}"
