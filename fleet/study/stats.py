"""Intervals over seeds: Student t and the seeded percentile bootstrap.

A study reports, for each variant and figure, the mean over its seeds with a two-sided 95 %
interval, and the same for the differences from a reference variant seed by seed (paired: the
two runs of a seed share buildings, weather and noise, so their difference is free of the
seed-to-seed spread).

- **t**: ``mean ± t(0.975, n - 1) · s / √n`` (:func:`fleet.tradeoff.estimate`), exact when the
  seed-to-seed values are normal, whatever ``n``.
- **bootstrap** (percentile, Efron & Tibshirani 1993, ch. 13): draw ``resamples`` samples of
  ``n`` values with replacement from the ``n`` values, take each one's mean; the interval runs
  from the ``α/2`` to the ``1 - α/2`` quantile of those means, a quantile being the smallest
  resampled mean whose share of means at or below it reaches the level (numpy's
  ``inverted_cdf``). It assumes no distribution, which is what rliable and marl-eval report;
  with very few seeds it is narrower than t (it cannot see spread the seeds did not show: with
  two seeds it is the range of the two means), so read it with its ``n``. The draws come from
  ``numpy.random.Generator(PCG64(seed))``: the same values and seed give the same interval.

One value has no interval (``low`` and ``high`` are None).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fleet.tradeoff import CONFIDENCE, estimate

CHUNK = 256
"""Rows of a curve bootstrapped at once (each holds ``resamples`` means)."""


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` seeds and its interval (None for one seed)."""

    mean: float
    low: float | None
    high: float | None
    n: int


def t_interval(values: list[float] | np.ndarray) -> Interval:
    """Mean and the 95 % Student t interval of ``values`` (n,)."""
    e = estimate(list(np.asarray(values, dtype=float)))
    if e.ci95_half_width is None:
        return Interval(e.mean, None, None, 1)
    return Interval(e.mean, e.mean - e.ci95_half_width, e.mean + e.ci95_half_width, len(values))


def bootstrap_bounds(
    x: np.ndarray, resamples: int, seed: int, confidence: float = CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap bounds of the mean of each row of ``x`` (T, n): (low (T,), high (T,)).

    Every row is resampled with the same draws: a resample is a vector of counts (how often
    each of the n seeds was drawn), multinomial with n trials and equal probabilities."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    n = x.shape[1]
    counts = np.random.Generator(np.random.PCG64(seed)).multinomial(n, np.full(n, 1.0 / n), size=resamples)  # (B, n)
    alpha = 1.0 - confidence
    low, high = np.empty(len(x)), np.empty(len(x))
    for start in range(0, len(x), CHUNK):
        means = x[start : start + CHUNK] @ counts.T / n  # (rows, B)
        rows = slice(start, start + CHUNK)
        low[rows], high[rows] = np.quantile(means, [alpha / 2, 1 - alpha / 2], axis=1, method="inverted_cdf")
    return low, high


def bootstrap_interval(
    values: list[float] | np.ndarray, resamples: int, seed: int, confidence: float = CONFIDENCE
) -> Interval:
    """Mean and the percentile bootstrap interval of ``values`` (n,)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return Interval(float(x.mean()), None, None, len(x))
    low, high = bootstrap_bounds(x[None, :], resamples, seed, confidence)
    return Interval(float(x.mean()), float(low[0]), float(high[0]), len(x))
