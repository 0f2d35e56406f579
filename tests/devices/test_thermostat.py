"""The deadband thermostat: hysteresis by hand, then in closed loop with the building."""

import numpy as np
import pytest

from devices.building import DeviceParams, ThermostatFleet
from devices.config import BuildingConfig, HvacConfig, OccupancyConfig, RuleBasedConfig
from devices.thermostat import RuleBasedThermostat


def one(thermostat, temp, lo=20.0, hi=23.0):
    return int(thermostat.act(np.array([temp]), np.array([lo]), np.array([hi]))[0])


def test_heat_hysteresis_by_hand():
    t = RuleBasedThermostat(RuleBasedConfig(deadband_c=0.5), "heat", n_levels=4, n=1)
    temps = [21.0, 19.9, 20.2, 20.49, 20.5, 20.2, 19.99, 20.0]
    assert [one(t, x) for x in temps] == [0, 3, 3, 3, 0, 0, 3, 3]


def test_cool_hysteresis_by_hand():
    t = RuleBasedThermostat(RuleBasedConfig(deadband_c=0.5), "cool", n_levels=3, n=1)
    temps = [22.0, 23.1, 22.8, 22.51, 22.5, 22.8, 23.01]
    assert [one(t, x) for x in temps] == [0, 2, 2, 2, 0, 0, 2]


def test_devices_keep_their_own_state_and_reset_switches_off():
    t = RuleBasedThermostat(RuleBasedConfig(), "heat", n_levels=2, n=3)
    lo, hi = np.full(3, 20.0), np.full(3, 23.0)
    np.testing.assert_array_equal(t.act(np.array([19.0, 19.0, 21.0]), lo, hi), [1, 1, 0])
    t.reset(np.array([True, False, False]))
    out = t.act(np.full(3, 20.2), lo, hi)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [0, 1, 0])


def test_inputs_of_the_wrong_shape_are_rejected():
    t = RuleBasedThermostat(RuleBasedConfig(), "heat", n_levels=2, n=3)
    with pytest.raises(ValueError, match=r"lo must have shape \(3,\)"):
        t.act(np.zeros(3), np.zeros(2), np.zeros(3))


def test_closed_loop_holds_the_band_in_steady_cold():
    n, lo_c, dt_s, t_out_c = 200, 20.0, 60.0, 8.0
    cfg = RuleBasedConfig(deadband_c=0.5)
    params = DeviceParams.draw(BuildingConfig(), HvacConfig(), OccupancyConfig(), n, np.random.default_rng(0))
    fleet = ThermostatFleet(params, "heat")
    thermostat = RuleBasedThermostat(cfg, "heat", fleet.n_levels, n)
    lo, hi, t_out = np.full(n, lo_c), np.full(n, 23.0), t_out_c + params.outdoor_offset
    low, high = np.full(n, np.inf), np.full(n, -np.inf)
    for tick in range(24 * 60):
        fleet.step(thermostat.act(fleet.temp, lo, hi), t_out, dt_s)
        if tick >= 12 * 60:  # settled: devices that started warm have drifted down to the band
            low, high = np.minimum(low, fleet.temp), np.maximum(high, fleet.temp)
    small = 0.1  # largest temperature change over one 1-minute tick with these parameters
    assert low.min() >= lo_c - small and high.max() <= lo_c + cfg.deadband_c + small
    assert np.median(high - low) > 0.4  # the devices really cycle through the deadband
