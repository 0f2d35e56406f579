"""Intervals over seeds, against answers worked out by hand."""

import math

import numpy as np
import pytest

from fleet.study.stats import Interval, bootstrap_bounds, bootstrap_interval, t_interval


def test_the_percentile_bootstrap_finds_the_quantiles_of_the_exact_resampling_distribution():
    """Resampling (0, 0, 3): the number of 3s drawn is Binomial(3, 1/3), so the resampled mean is
    0, 1, 2, 3 with probabilities 8/27, 12/27, 6/27, 1/27. Its CDF is 0.296, 0.741, 0.963, 1:
    the 2.5 % quantile is 0; the 97.5 % one is 3 (0.963 < 0.975) and the 95 % one 2."""
    assert bootstrap_interval([0.0, 0.0, 3.0], 20_000, seed=0) == Interval(1.0, 0.0, 3.0, 3)
    ninety = bootstrap_interval([0.0, 0.0, 3.0], 20_000, seed=0, confidence=0.90)
    assert (ninety.low, ninety.high) == (0.0, 2.0)


def test_two_seeds_give_the_range_of_their_values():
    """Resampling (a, b): the means a, (a + b) / 2, b with probabilities 1/4, 1/2, 1/4."""
    i = bootstrap_interval([2.0, 5.0], 10_000, seed=3)
    assert (i.mean, i.low, i.high, i.n) == (3.5, 2.0, 5.0, 2)


def test_the_bootstrap_is_seeded():
    x = np.random.default_rng(7).normal(size=6)
    assert bootstrap_interval(x, 2_000, seed=1) == bootstrap_interval(x, 2_000, seed=1)
    assert bootstrap_interval(x, 2_000, seed=1) != bootstrap_interval(x, 2_000, seed=2)


def test_curve_rows_are_bootstrapped_alike_and_in_chunks():
    rows = np.array([[0.0, 0.0, 3.0]] * 600)  # more rows than one chunk
    low, high = bootstrap_bounds(rows, 20_000, seed=0)
    assert (low == 0).all() and (high == 3).all()


def test_the_t_interval_of_one_two_three():
    """mean 2, s = 1, t(0.975, 2) = 4.302653: 2 ± 4.302653 / sqrt(3)."""
    i = t_interval([1.0, 2.0, 3.0])
    assert (
        i.mean == 2.0
        and i.high - 2.0 == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
        and i.low == pytest.approx(4.0 - i.high)
    )


def test_one_seed_has_no_interval():
    assert t_interval([4.0]) == bootstrap_interval([4.0], 100, 0) == Interval(4.0, None, None, 1)
