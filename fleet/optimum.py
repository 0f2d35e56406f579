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

With a ``discount`` per tick below 1 it is the optimum of the discounted objective instead, the
sum over ticks k of discount**k times the tick's cost: what a learner that sees the houses
perfectly but discounts as it does would do (a learner's discount per tick is
:meth:`fleet.learners.configs.ActorCriticConfig.discount` of its control period). Its totals are
still the plain sums over the counted ticks, so the gap to the undiscounted optimum is what the
discount costs.

The dynamic programme itself (:func:`cost_to_go`, :func:`level_costs`) takes any RC house
model (:class:`HouseModel`) and any conditions per tick (:class:`Stage`): the planner learner
(:mod:`fleet.learners.planner`) runs it on the model each device identified of its own house
and on what it knows of the days ahead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from devices.building import ThermostatFleet, rc_step
from devices.occupancy import comfort_violation_c
from fleet.sim.world import World

GRID_C = (0.0, 35.0, 0.05)
"""Temperature grid of the optimum's value function: low, high, step, degC."""


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


@dataclass(frozen=True)
class HouseModel:
    """N first-order RC houses as the dynamic programme steps them (:func:`devices.building.rc_step`):
    ``resistance`` and ``capacitance`` (N,), and per HVAC level the electrical ``power`` (N, L), kW,
    and the ``heat`` (N, L) it puts into the house, internal gains included (kW with the true R;
    degC with R = 1, as an identified model gives it: :mod:`fleet.learners.planner.identification`)."""

    resistance: np.ndarray
    capacitance: np.ndarray
    power: np.ndarray
    heat: np.ndarray

    def after(self, temp: np.ndarray, outdoor_c: np.ndarray, level: int, dt_h: float) -> np.ndarray:
        """Indoor temperatures (N, M) after ``dt_h`` hours at ``level`` from ``temp`` (N, M),
        outdoors ``outdoor_c`` (N,)."""
        return rc_step(
            temp,
            outdoor_c[:, None],
            self.heat[:, level : level + 1],
            self.resistance[:, None],
            self.capacitance[:, None],
            dt_h,
        )


@dataclass(frozen=True)
class Stage:
    """The conditions of one control tick, each (N,): outdoor temperature, price per kWh, and the
    comfort band that the temperature at the end of the tick is held to."""

    outdoor_c: np.ndarray
    price: np.ndarray
    band_lo: np.ndarray
    band_hi: np.ndarray


def house_model(world: World, mode: str) -> HouseModel:
    """The world's true houses, as :class:`devices.building.ThermostatFleet` steps them (cooling removes heat)."""
    p = world.params
    sign = 1.0 if mode == "heat" else -1.0
    return HouseModel(
        p.resistance, p.capacitance, p.levels_kw, sign * p.cop[:, None] * p.levels_kw + p.internal_gain[:, None]
    )


def stage_at(world: World, t: float) -> Stage:
    """What a tick at ``t`` brings every house of ``world``."""
    c = world.conditions(t)
    return Stage(c["outdoor_c"], c["price"], c["band_lo"], c["band_hi"])


def cost_to_go(
    house: HouseModel,
    stages: list[Stage],
    weight: float,
    dt_h: float,
    grid: tuple[float, float, float] = GRID_C,
    discount: float = 1.0,
) -> np.ndarray:
    """The optimal cost-to-go (K + 1, N, G) float32 of every house on the temperature ``grid``
    (low, high, step) before each of the K ``stages`` (and 0 after the last): energy cost plus
    ``weight`` per degree-hour outside the band, ticks of ``dt_h`` hours, each tick's cost weighed
    by ``discount`` per tick from the tick it is seen from."""
    temps = np.arange(*grid)
    value = np.zeros((len(stages) + 1, house.power.shape[0], len(temps)), dtype=np.float32)
    for k in range(len(stages) - 1, -1, -1):
        ahead = discount * value[k + 1]
        value[k] = level_costs(house, stages[k], temps[None, :], ahead, weight, dt_h, grid).min(axis=0)
    return value


def level_costs(
    house: HouseModel,
    stage: Stage,
    temp: np.ndarray,
    next_value: np.ndarray,
    weight: float,
    dt_h: float,
    grid: tuple[float, float, float] = GRID_C,
) -> np.ndarray:
    """(L, N, M): the cost of each level from temperatures ``temp`` (N, M) or (1, M) through
    ``stage``, then the cost-to-go ``next_value`` (N, G) on ``grid`` from where it leads."""
    out = []
    for a in range(house.power.shape[1]):
        after = house.after(temp, stage.outdoor_c, a, dt_h)
        violation = comfort_violation_c(after, stage.band_lo[:, None], stage.band_hi[:, None])
        now = (house.power[:, a : a + 1] * stage.price[:, None] + weight * violation) * dt_h
        out.append(now + interpolate(next_value, after, grid))
    return np.stack(out)


def optimal_control(
    world: World,
    window: Window,
    discomfort_per_degh: float,
    start_c: np.ndarray,
    mode: str = "heat",
    on_level: Callable[[np.ndarray], None] | None = None,
    discount: float = 1.0,
) -> Outcome:
    """Minimize cost + ``discomfort_per_degh`` x discomfort of every house over ``window``,
    from indoor temperatures ``start_c`` (N,), each tick's weighed by ``discount`` per tick
    (in (0, 1]; 1: not discounted); returns the optimal trajectory's (undiscounted) totals.
    ``on_level`` gets the levels (N,) chosen at each tick. Holds the value function of every
    tick: K x N x 700 float32 (160 MB for 100 houses over 6 days of 15-minute ticks)."""
    if not 0.0 < discount <= 1.0:
        raise ValueError(f"discount must be in (0, 1], got {discount}")
    p, dt_h = world.params, window.dt_s / 3600.0
    house = house_model(world, mode)
    stages = [stage_at(world, float(t)) for t in window.times_s]
    value = cost_to_go(house, stages, discomfort_per_degh, dt_h, discount=discount)
    houses, cost, discomfort = ThermostatFleet(p, mode), np.zeros(p.n), np.zeros(p.n)
    houses.temp = np.asarray(start_c, float).copy()
    for k, stage in enumerate(stages):
        ahead = discount * value[k + 1]  # the cost-to-go seen from tick k
        q = level_costs(house, stage, houses.temp[:, None], ahead, discomfort_per_degh, dt_h)[:, :, 0]
        level = np.argmin(q, axis=0)
        if on_level is not None:
            on_level(level)
        drawn = houses.step(level, stage.outdoor_c, window.dt_s)
        if window.counted[k]:
            cost += drawn * stage.price * dt_h
            discomfort += comfort_violation_c(houses.temp, stage.band_lo, stage.band_hi) * dt_h
    return Outcome(cost, discomfort)


def interpolate(value: np.ndarray, temp: np.ndarray, grid: tuple[float, float, float] = GRID_C) -> np.ndarray:
    """Row-wise linear interpolation of ``value`` (N, G) on ``grid`` at ``temp`` (N, M),
    clamped to the grid's ends."""
    low, high, step = grid
    x = (np.clip(temp, low, high - step) - low) / step
    i = np.minimum(x.astype(np.int64), value.shape[1] - 2)
    frac = x - i
    v0 = np.take_along_axis(value, i, axis=1)
    v1 = np.take_along_axis(value, i + 1, axis=1)
    return v0 + frac * (v1 - v0)
