"""Occupancy schedules with per-device shifts, and the comfort band they set."""

import numpy as np
import pytest

from devices.config import OccupancyConfig
from devices.occupancy import Occupancy, comfort_violation_c

H = 3600.0


@pytest.fixture
def occupancy():
    """Default schedule (home 00-07 and 17-24) shifted by 0, +1 h and -1 h."""
    return Occupancy(OccupancyConfig(), np.array([0.0, 1.0, -1.0]))


@pytest.mark.parametrize(
    "hour, expected",
    [
        (6.5, [True, True, False]),  # local hours 6.5, 5.5, 7.5
        (7.5, [False, True, False]),  # 7.5, 6.5, 8.5
        (16.5, [False, False, True]),  # 16.5, 15.5, 17.5
        (23.5, [True, True, True]),  # 23.5, 22.5, 0.5 of the next day
        (17.5, [True, False, True]),
    ],  # 17.5, 16.5, 18.5
)
def test_shifted_schedule(occupancy, hour, expected):
    for day in (0, 2):
        np.testing.assert_array_equal(occupancy.occupied((day * 24 + hour) * H), expected)


def test_interval_start_is_included_and_end_excluded():
    occ = Occupancy(OccupancyConfig(), np.zeros(1))
    assert not occ.occupied(7 * H)[0] and occ.occupied(17 * H)[0]


def test_band_switches_with_occupancy(occupancy):
    lo, hi = occupancy.band(7.5 * H)
    np.testing.assert_array_equal(lo, [16.0, 20.0, 16.0])
    np.testing.assert_array_equal(hi, [26.0, 23.0, 26.0])


def test_nobody_home_means_the_unoccupied_band():
    occ = Occupancy(OccupancyConfig(occupied_hours=()), np.zeros(2))
    assert not occ.occupied(20 * H).any()
    lo, hi = occ.band(20 * H)
    np.testing.assert_array_equal(lo, [16.0, 16.0])


def test_comfort_violation_by_hand():
    temp = np.array([18.0, 20.0, 21.5, 23.0, 25.5])
    lo, hi = np.full(5, 20.0), np.full(5, 23.0)
    np.testing.assert_allclose(comfort_violation_c(temp, lo, hi), [2.0, 0.0, 0.0, 0.0, 2.5])


def test_several_times_at_once_give_one_column_per_time(occupancy):
    times = 3600.0 * np.array([6.5, 7.0, 16.9, 23.0])
    lo, hi = occupancy.band(times)
    assert lo.shape == hi.shape == (len(occupancy.shift_h), len(times))
    for j, t in enumerate(times):
        np.testing.assert_array_equal(occupancy.occupied(times)[:, j], occupancy.occupied(t))
        np.testing.assert_array_equal(lo[:, j], occupancy.band(t)[0])
        np.testing.assert_array_equal(hi[:, j], occupancy.band(t)[1])


def test_agrees_with_the_definition_on_random_schedules():
    """Occupied exactly when the local hour lies in one of the intervals [start, end), whatever
    their order in the config; hours on every interval's ends included."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        cuts = np.sort(rng.choice(np.arange(0.0, 24.5, 0.5), size=2 * rng.integers(1, 5), replace=False))
        hours = [tuple(pair) for pair in cuts.reshape(-1, 2)]
        rng.shuffle(hours)
        occ = Occupancy(OccupancyConfig(occupied_hours=tuple(hours)), rng.normal(0, 2, 40).round(1))
        times = H * np.concatenate([cuts, cuts + 24, rng.uniform(0, 72, 30)])
        local = (times / H - occ.shift_h[:, None]) % 24
        expected = np.zeros(local.shape, bool)
        for start, end in hours:
            expected |= (start <= local) & (local < end)
        np.testing.assert_array_equal(occ.occupied(times), expected)
