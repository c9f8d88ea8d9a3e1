"""Timing ratios as the benchmarks report them: the median of per-round ratios and its interquartile range."""

import pytest

from srlib.cost import ratio_spread
from srlib.report.format import console_spread


def test_ratio_spread_takes_ratios_round_by_round():
    # Round 3 is slow for both sides (machine load): its ratio is still 2.
    spread = ratio_spread([2.0, 4.0, 20.0, 3.0, 5.0], [1.0, 1.0, 10.0, 1.0, 1.0])
    assert spread == {"median": 3.0, "q1": 2.0, "q3": 4.0, "n": 5}
    assert console_spread(spread, digits=2) == "3.00x (IQR 2.00-4.00, 5 rounds)"


def test_ratio_spread_of_one_round_is_that_ratio():
    assert ratio_spread([3.0], [2.0]) == {"median": 1.5, "q1": 1.5, "q3": 1.5, "n": 1}


@pytest.mark.parametrize("numerators, denominators", [([], []), ([1.0], [1.0, 2.0])])
def test_ratio_spread_needs_paired_rounds(numerators, denominators):
    with pytest.raises(ValueError):
        ratio_spread(numerators, denominators)
