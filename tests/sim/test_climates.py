"""The shipped climates: the cold continental one is cold, and heating in it is feasible.

Feasible means what the RC model gives in steady state: a house at full power settles at
``T_out + R (COP P_max + Q_internal)``; where that is below the comfort band's lower bound no
controller keeps it comfortable.
"""

import numpy as np

from fleet.scenario import load_scenario
from fleet.sim.rng import Streams
from fleet.sim.world import build_world

DAYS = 40  # the learning study's horizon from January 15


def short_of_the_band(overrides: list[str]) -> np.ndarray:
    """(hours, N) degC by which each house at full power stays below its band's low bound."""
    scenario = load_scenario("thermostats-cold-v1", [f"horizon={DAYS}d", *overrides])
    world = build_world(scenario, Streams(scenario.seed))
    p = world.params
    out = []
    for t in np.arange(DAYS * 24) * 3600.0:
        settles = (
            world.weather.outdoor_c(t)
            + p.outdoor_offset
            + p.resistance * (p.cop * p.levels_kw[:, -1] + p.internal_gain)
        )
        out.append(np.maximum(world.occupancy.band(t)[0] - settles, 0))
    return np.array(out)


def test_the_cold_climate_is_chicagos_winter():
    world = build_world(load_scenario("thermostats-cold-v1"), Streams(0))
    hourly = np.array([world.weather.outdoor_c(h * 3600.0) for h in range(DAYS * 24)])
    assert -5 < hourly.mean() < -2 and hourly.min() < -20  # O'Hare's TMY3 from January 15: -3.3 degC, down to -21.7


def test_its_heat_pumps_hold_the_band_in_all_but_a_few_device_hours():
    assert (short_of_the_band([]) > 0).mean() < 0.01
    assert (short_of_the_band(["fleet.hvac.power_levels_kw=[0, 1, 2, 3]"]) > 0).mean() > 0.04  # thermostats-small-v1's
