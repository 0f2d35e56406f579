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

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from devices.building import ThermostatFleet
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


BLOCK = 128
"""Houses whose programme is run together: a stage's (BLOCK, L, G) arrays stay in the processor's cache."""


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
    by ``discount`` per tick from the tick it is seen from. All houses on one axis, in blocks of
    :data:`BLOCK` (the whole recursion of a block runs while its arrays are in the cache)."""
    points = np.arange(len(np.arange(*grid)), dtype=float)  # (G,) the grid in grid units
    value = np.zeros((len(stages) + 1, house.power.shape[0], len(points)), dtype=np.float32)
    for start in range(0, house.power.shape[0], BLOCK):
        rows = slice(start, start + BLOCK)
        block_house, block_stages, block_value = _rows(house, rows), [_rows(s, rows) for s in stages], value[:, rows]
        for k in range(len(stages) - 1, -1, -1):
            ahead = discount * block_value[k + 1]
            costs = _costs(block_house, block_stages[k], points[None, :], ahead, weight, dt_h, grid)
            block_value[k] = costs.min(axis=1)
    return value


def _rows(fields_of, rows: slice):
    """A :class:`HouseModel` or :class:`Stage` of the houses ``rows`` only."""
    return type(fields_of)(*(getattr(fields_of, f.name)[rows] for f in dataclasses.fields(fields_of)))


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
    low, _, step = grid
    return np.moveaxis(_costs(house, stage, (temp - low) / step, next_value, weight, dt_h, grid), 1, 0)


def _costs(
    house: HouseModel,
    stage: Stage,
    x: np.ndarray,
    next_value: np.ndarray,
    weight: float,
    dt_h: float,
    grid: tuple[float, float, float],
) -> np.ndarray:
    """(N, L, M): :func:`level_costs` from grid positions ``x`` (N, M) or (1, M) (temperatures
    ``low + x * step``). The programme in grid units: a tick at a level takes x to
    ``decay * x + (1 - decay) * x_inf``, :func:`devices.building.rc_step` with the steady state
    ``x_inf`` (N, L) of each level, so the arrays (N, L, M) cost a few passes each."""
    low, _, step = grid
    decay = np.exp(-dt_h / (house.resistance * house.capacitance))[:, None, None]  # (N, 1, 1)
    steady = stage.outdoor_c[:, None] + house.resistance[:, None] * house.heat  # (N, L) degC
    after = decay * x[:, None, :] + (1.0 - decay) * ((steady - low) / step)[:, :, None]  # (N, L, M)
    lo, hi = ((stage.band_lo - low) / step)[:, None, None], ((stage.band_hi - low) / step)[:, None, None]
    costs = comfort_violation_c(after, lo, hi)
    costs *= weight * step * dt_h
    costs += (house.power * stage.price[:, None] * dt_h)[:, :, None]
    costs += interpolate_units(next_value, after, grid)
    return costs


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
    low, _, step = grid
    return interpolate_units(value, (temp - low) / step, grid)


def interpolate_units(value: np.ndarray, x: np.ndarray, grid: tuple[float, float, float] = GRID_C) -> np.ndarray:
    """Row-wise linear interpolation of ``value`` (N, G) at grid positions ``x`` (N, ...) (the
    temperatures ``low + x * step`` of ``grid``), clamped to the grid's ends, from the two grid
    points around each position (:func:`_cells`)."""
    low, high, step = grid
    g = value.shape[1]
    x = np.clip(x, 0.0, (high - step - low) / step)
    i = x.astype(np.int64)
    np.minimum(i, g - 2, out=i)
    x -= i  # the fraction of the cell
    start, slope = _cells(value, i)
    return start + x * slope


def _cells(value: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The value (float32) at the grid points ``i`` (N, ...) of each row of ``value`` (N, G), and
    the slope (float32) to the next point. Fewer positions than points (a device acting reads L of
    its G) are read where they are; more (the programme reads every point L times) from each cell's
    value and slope packed into one complex64, so that a single gather fetches both."""
    n, g = value.shape
    row = np.arange(n).reshape((n,) + (1,) * (i.ndim - 1))
    if i.size < value.size:
        at = i + g * row
        start = value.ravel().take(at)
        return start.astype(np.float32), (value.ravel().take(at + 1) - start).astype(np.float32)
    cells = np.empty((n, g - 1), np.complex64)
    cells.real, cells.imag = value[:, :-1], value[:, 1:] - value[:, :-1]
    got = cells.ravel().take(i + (g - 1) * row)
    return got.real, got.imag
