"""The perfect-information optimum of a scenario's houses: what any controller could reach.

Each house is controlled alone, knowing its weather, comfort schedule and tariff in advance,
by dynamic programming over its indoor temperature: the simulator's own RC step
(:func:`devices.building.rc_step`), its power levels and the same cost and discomfort
accounting as the engine (discomfort measured at the end of each tick). The value function
lives on a temperature grid and is interpolated linearly between grid points; the forward
pass picks each action at the exact temperature reached, so the trajectory is one the
simulator would produce. Feeders, sensor noise and the network play no part: this is a bound
for a single house's energy cost against its discomfort, given the reward's weight per
degree-hour (sweeping the weight traces the frontier).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from devices.building import ThermostatFleet, rc_step
from devices.occupancy import comfort_violation_c
from fleet.sim.world import World

GRID_C = (0.0, 35.0, 0.05)
"""Temperature grid of the value function: low, high, step, degC."""


@dataclass(frozen=True)
class Window:
    """The control ticks ``times_s`` (K,) of an optimization, and which of them are ``counted``
    (K,) bool in its cost and discomfort (the first ones let the start temperature settle)."""

    times_s: np.ndarray
    counted: np.ndarray
    dt_s: float


@dataclass(frozen=True)
class Outcome:
    """Totals over the counted ticks, per device (N,): energy cost and discomfort, degC*h."""

    cost: np.ndarray
    discomfort_degh: np.ndarray


def _level_heat(world: World, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Electrical power (N, L) of each level and the heat it puts into the house (N, L), kW,
    as :class:`devices.building.ThermostatFleet` steps them (cooling removes heat)."""
    p = world.params
    return p.levels_kw, (1.0 if mode == "heat" else -1.0) * p.cop[:, None] * p.levels_kw + p.internal_gain[:, None]


def optimal_control(
    world: World,
    window: Window,
    discomfort_per_degh: float,
    start_c: np.ndarray,
    mode: str = "heat",
    on_level: Callable[[np.ndarray], None] | None = None,
) -> Outcome:
    """Minimize cost + ``discomfort_per_degh`` x discomfort of every house over ``window``,
    from indoor temperatures ``start_c`` (N,); returns the optimal trajectory's totals.
    ``on_level`` gets the levels (N,) chosen at each tick. Holds the value function of every
    tick: K x N x 700 float32 (160 MB for 100 houses over 6 days of 15-minute ticks)."""
    p, dt_h = world.params, window.dt_s / 3600.0
    steps = [world.conditions(float(t)) for t in window.times_s]
    value = cost_to_go(world, window, discomfort_per_degh, mode, steps)
    houses, cost, discomfort = ThermostatFleet(p, mode), np.zeros(p.n), np.zeros(p.n)
    houses.temp = np.asarray(start_c, float).copy()
    for k, step in enumerate(steps):
        level = best_levels(world, step, houses.temp, value[k + 1], discomfort_per_degh, window.dt_s, mode)
        if on_level is not None:
            on_level(level)
        drawn = houses.step(level, step["outdoor_c"], window.dt_s)
        if window.counted[k]:
            cost += drawn * step["price"] * dt_h
            discomfort += comfort_violation_c(houses.temp, step["band_lo"], step["band_hi"]) * dt_h
    return Outcome(cost, discomfort)


def cost_to_go(
    world: World, window: Window, discomfort_per_degh: float, mode: str = "heat", steps: list[dict] | None = None
) -> np.ndarray:
    """The optimal cost-to-go (K+1, N, G) float32 after each of the K ticks of ``window`` (0 after the
    last), of every house from each temperature of the grid (:data:`GRID_C`, G points). ``steps``:
    the ticks' :meth:`World.conditions`, if already at hand."""
    p, dt_h = world.params, window.dt_s / 3600.0
    power, heat = _level_heat(world, mode)
    grid = np.arange(*GRID_C)
    steps = steps if steps is not None else [world.conditions(float(t)) for t in window.times_s]
    value = np.zeros((len(steps) + 1, p.n, len(grid)), dtype=np.float32)
    for k in range(len(steps) - 1, -1, -1):
        value[k] = np.min(
            [
                _q(steps[k], grid[None, :], a, value[k + 1], p, power, heat, dt_h, discomfort_per_degh)
                for a in range(power.shape[1])
            ],
            axis=0,
        )
    return value


def best_levels(
    world: World,
    step: dict,
    temp_c: np.ndarray,
    next_value: np.ndarray,
    discomfort_per_degh: float,
    dt_s: float,
    mode: str = "heat",
) -> np.ndarray:
    """The optimal level (N,) of every house at indoor temperatures ``temp_c`` (N,) under the
    conditions ``step``, given the cost-to-go ``next_value`` (N, G) after the tick (a row of
    :func:`cost_to_go`)."""
    power, heat = _level_heat(world, mode)
    q = [
        _q(step, temp_c[:, None], a, next_value, world.params, power, heat, dt_s / 3600.0, discomfort_per_degh)[:, 0]
        for a in range(power.shape[1])
    ]
    return np.argmin(q, axis=0)


def _q(
    step: dict,
    temp: np.ndarray,
    a: int,
    next_value: np.ndarray,
    p,
    power: np.ndarray,
    heat: np.ndarray,
    dt_h: float,
    weight: float,
) -> np.ndarray:
    """Cost of level ``a`` from temperatures ``temp`` (N, M) under the conditions ``step``
    (:meth:`World.conditions`), then the cost-to-go: (N, M)."""
    after = rc_step(
        temp, step["outdoor_c"][:, None], heat[:, a : a + 1], p.resistance[:, None], p.capacitance[:, None], dt_h
    )
    violation = comfort_violation_c(after, step["band_lo"][:, None], step["band_hi"][:, None])
    now = (power[:, a : a + 1] * step["price"][:, None] + weight * violation) * dt_h
    return now + _interp(next_value, after)


def _interp(value: np.ndarray, temp: np.ndarray) -> np.ndarray:
    """Row-wise linear interpolation of ``value`` (N, G) on the grid at ``temp`` (N, M),
    clamped to the grid's ends."""
    low, high, step = GRID_C
    x = (np.clip(temp, low, high - step) - low) / step
    i = np.minimum(x.astype(np.int64), value.shape[1] - 2)
    frac = x - i
    v0 = np.take_along_axis(value, i, axis=1)
    v1 = np.take_along_axis(value, i + 1, axis=1)
    return v0 + frac * (v1 - v0)
