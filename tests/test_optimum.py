"""The perfect-information optimum against brute force and against the thermostat."""

import itertools

import numpy as np
import pytest

from devices.building import ThermostatFleet, rc_step
from devices.config import RuleBasedConfig
from devices.occupancy import comfort_violation_c
from devices.thermostat import RuleBasedThermostat
from fleet.optimum import BLOCK, HouseModel, Stage, Window, cost_to_go, interpolate_units, optimal_control
from fleet.scenario import parse_scenario
from fleet.sim.rng import Streams
from fleet.sim.world import build_world
from tests.conftest import tiny_scenario

DT = 900.0


@pytest.fixture(scope="module")
def world():
    """The tiny scenario's 6 houses at 15-minute ticks, over two days."""
    raw = tiny_scenario()
    raw.update(horizon="2d", control_period="15min")
    return build_world(parse_scenario(raw, "test", "."), Streams(3))


def replay(world, window: Window, start: np.ndarray, levels_at) -> tuple[np.ndarray, np.ndarray]:
    """Cost and discomfort (N,) of the levels ``levels_at(k, temp)`` chosen at each tick."""
    p, dt_h = world.params, window.dt_s / 3600
    temp, cost, discomfort = start.copy(), np.zeros(p.n), np.zeros(p.n)
    for k, t in enumerate(window.times_s):
        lo, hi = world.occupancy.band(t)
        level = levels_at(k, temp, lo, hi)
        power = p.levels_kw[np.arange(p.n), level]
        temp = rc_step(
            temp,
            world.weather.outdoor_c(t) + p.outdoor_offset,
            p.cop * power + p.internal_gain,
            p.resistance,
            p.capacitance,
            dt_h,
        )
        if window.counted[k]:
            cost += power * world.tariff.price(t) * dt_h
            discomfort += comfort_violation_c(temp, lo, hi) * dt_h
    return cost, discomfort


def test_the_optimum_of_a_short_window_is_the_best_of_all_level_sequences(world):
    # 6 ticks from 16:00, when the band rises and the price peaks: 4**6 sequences per house
    times = 86400 + 16 * 3600 + DT * np.arange(6)
    window = Window(times, np.ones(6, bool), DT)
    start = np.full(world.params.n, 17.0)
    weight = 1.0
    best = np.full(world.params.n, np.inf)
    for seq in itertools.product(range(4), repeat=6):
        cost, discomfort = replay(world, window, start, lambda k, *_, seq=seq: np.full(world.params.n, seq[k]))
        best = np.minimum(best, cost + weight * discomfort)
    got = optimal_control(world, window, weight, start)
    np.testing.assert_allclose(got.cost + weight * got.discomfort_degh, best, rtol=1e-3, atol=1e-3)


def test_the_optimum_is_no_worse_than_the_thermostat_and_trades_cost_for_comfort(world):
    times = np.arange(0, 2 * 86400, DT)
    window = Window(times, times >= 86400, DT)  # the first day lets the start settle
    start = world.params.initial_temp
    thermostat = RuleBasedThermostat(RuleBasedConfig(), "heat", 4, world.params.n)
    cost, discomfort = replay(world, window, start, lambda k, temp, lo, hi: thermostat.act(temp, lo, hi))
    for weight in (0.3, 1.0):
        best = optimal_control(world, window, weight, start)
        assert np.all(best.cost + weight * best.discomfort_degh <= cost + weight * discomfort + 1e-6)
    cheap, comfortable = optimal_control(world, window, 0.05, start), optimal_control(world, window, 5.0, start)
    assert cheap.cost.sum() < comfortable.cost.sum() and cheap.discomfort_degh.sum() > comfortable.discomfort_degh.sum()
    assert comfortable.discomfort_degh.max() < 0.05 * discomfort.mean()


def test_the_optimums_trajectory_is_the_simulators(world):
    """The forward pass steps the houses as ThermostatFleet does: replaying its choices in the
    simulator's own fleet model gives the same totals."""
    times = np.arange(86400, 86400 + 8 * 3600, DT)
    window = Window(times, np.ones(len(times), bool), DT)
    start = np.full(world.params.n, 19.0)
    got = optimal_control(world, window, 1.0, start)
    levels = []
    optimal_control(world, window, 1.0, start, on_level=levels.append)
    fleet = ThermostatFleet(world.params, "heat")
    fleet.temp = start.copy()
    cost = discomfort = 0.0
    for t, level in zip(times, levels):
        lo, hi = world.occupancy.band(t)
        power = fleet.step(level, world.weather.outdoor_c(t) + world.params.outdoor_offset, DT)
        cost += power * world.tariff.price(t) * DT / 3600
        discomfort += comfort_violation_c(fleet.temp, lo, hi) * DT / 3600
    np.testing.assert_allclose(got.cost, cost, rtol=1e-12)
    np.testing.assert_allclose(got.discomfort_degh, discomfort, rtol=1e-9, atol=1e-12)


# --- at a discount ---------------------------------------------------------------------------


def discounted(world, window: Window, start: np.ndarray, levels_at, weight: float, gamma: float) -> np.ndarray:
    """Sum over ticks k of gamma**k (cost + weight x discomfort) of the levels ``levels_at(k)`` (N,)."""
    total = np.zeros(world.params.n)
    for k in range(len(window.times_s)):
        one = Window(window.times_s[: k + 1], np.arange(k + 1) == k, window.dt_s)  # tick k alone counted
        cost, discomfort = replay(world, one, start, lambda j, *_: levels_at(j))
        total += gamma**k * (cost + weight * discomfort)
    return total


def test_at_a_discount_the_optimum_is_the_best_sequence_of_the_discounted_objective(world):
    """4 ticks from 16:00 by brute force: at 0.5 per tick, the last tick weighs an eighth of the first."""
    times = 86400 + 16 * 3600 + DT * np.arange(4)
    window = Window(times, np.ones(4, bool), DT)
    start, weight, gamma = np.full(world.params.n, 17.0), 1.0, 0.5
    best = np.full(world.params.n, np.inf)
    for seq in itertools.product(range(4), repeat=4):
        value = discounted(world, window, start, lambda k, seq=seq: np.full(world.params.n, seq[k]), weight, gamma)
        best = np.minimum(best, value)
    levels = []
    optimal_control(world, window, weight, start, on_level=levels.append, discount=gamma)
    got = discounted(world, window, start, lambda k: levels[k], weight, gamma)
    np.testing.assert_allclose(got, best, rtol=1e-3, atol=1e-3)


def test_a_near_zero_discount_is_myopic_and_a_horizon_far_away_is_no_discount(world):
    """At a discount of 1e-9 only the tick at hand counts: each level is the cheapest for that
    tick alone. At a horizon of 10**12 s the discount per tick is 1 - 9e-10: today's optimum."""
    times = np.arange(86400, 86400 + 12 * 3600, DT)
    window = Window(times, np.ones(len(times), bool), DT)
    start, weight = np.full(world.params.n, 18.0), 1.0
    levels = []
    optimal_control(world, window, weight, start, on_level=levels.append, discount=1e-9)
    for k, chosen in enumerate(levels):
        here = [
            replay(
                world,
                Window(times[: k + 1], np.arange(k + 1) == k, DT),
                start,
                lambda j, *_, a=a, k=k: np.full(world.params.n, a) if j == k else levels[j],
            )
            for a in range(4)
        ]
        tick_costs = np.array([cost + weight * discomfort for cost, discomfort in here])  # (4, N)
        np.testing.assert_array_equal(chosen, tick_costs.argmin(0))
    far = np.exp(-DT / 1e12)
    today, at_far = (
        optimal_control(world, window, weight, start),
        optimal_control(world, window, weight, start, discount=far),
    )
    np.testing.assert_allclose(at_far.cost, today.cost, rtol=1e-9)
    np.testing.assert_allclose(at_far.discomfort_degh, today.discomfort_degh, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="discount must be in"):
        optimal_control(world, window, weight, start, discount=0.0)


# --- the programme itself: batched over houses, against its definition ------------------------


def one_house_programme(house, stages, weight: float, dt_h: float, grid) -> np.ndarray:
    """(K + 1, G) the cost-to-go of house 0 of ``house`` by the programme's definition, one grid
    point and one level at a time: the simulator's RC step, the tick's cost, np.interp of the next
    stage's cost-to-go (clamped at the grid's ends)."""
    temps = np.arange(*grid)
    value = np.zeros((len(stages) + 1, len(temps)))
    for k in range(len(stages) - 1, -1, -1):
        s = stages[k]
        for g, temp in enumerate(temps):
            options = []
            for level in range(house.power.shape[1]):
                after = rc_step(
                    temp, s.outdoor_c[0], house.heat[0, level], house.resistance[0], house.capacitance[0], dt_h
                )
                violation = comfort_violation_c(after, s.band_lo[0], s.band_hi[0])
                now = (house.power[0, level] * s.price[0] + weight * violation) * dt_h
                options.append(now + np.interp(after, temps, value[k + 1]))
            value[k, g] = min(options)
    return value


def random_houses(n: int, k: int, rng: np.random.Generator):
    """``n`` identified houses (R = 1) with 4 levels and ``k`` stages of random conditions."""
    levels = np.array([0.0, 1.0, 2.0, 3.0]) * rng.uniform(0.8, 1.2, (n, 1))
    heat = rng.uniform(8, 20, (n, 1)) * levels + rng.uniform(0.3, 2, (n, 1))
    house = HouseModel(np.ones(n), rng.uniform(5, 60, n), levels, heat)
    stages = [
        Stage(rng.uniform(-10, 10, n), rng.uniform(0.1, 0.5, n), rng.uniform(17, 21, n), rng.uniform(21, 24, n))
        for _ in range(k)
    ]
    return house, stages


def test_the_batched_programme_is_each_houses_programme_by_its_definition():
    """Houses in several blocks at once give what each house's programme gives alone, worked one grid
    point and one level at a time (float32 storage: 1e-5 relative)."""
    rng = np.random.default_rng(4)
    grid, n = (12.0, 28.0, 0.5), 2 * BLOCK + 3
    house, stages = random_houses(n, 5, rng)
    got = cost_to_go(house, stages, 1.3, 0.25, grid)
    for i in (0, BLOCK - 1, BLOCK, n - 1):  # first and last of the blocks
        one = HouseModel(*(getattr(house, f)[i : i + 1] for f in ("resistance", "capacitance", "power", "heat")))
        alone = [
            Stage(*(getattr(s, f)[i : i + 1] for f in ("outdoor_c", "price", "band_lo", "band_hi"))) for s in stages
        ]
        np.testing.assert_allclose(got[:, i], one_house_programme(one, alone, 1.3, 0.25, grid), rtol=1e-5, atol=1e-5)


def test_interpolation_in_grid_units_by_hand():
    """Rows [0, 10, 20, 40] and [5, 5, 5, 5]: at 0.5 halfway, at 2.25 a quarter of the way from 20 to 40,
    clamped beyond the ends; any trailing shape."""
    value = np.array([[0.0, 10.0, 20.0, 40.0], [5.0, 5.0, 5.0, 5.0]], np.float32)
    x = np.array([[[0.5, 2.25, -1.0]], [[3.0, 7.0, 1.5]]])  # (2, 1, 3)
    np.testing.assert_allclose(interpolate_units(value, x, (0.0, 4.0, 1.0)), [[[5.0, 25.0, 0.0]], [[5.0, 5.0, 5.0]]])
    assert interpolate_units(value, np.array([[3.0]]), (0.0, 4.0, 1.0))[0, 0] == 40.0  # the last point itself


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_interpolation_at_a_few_positions_per_row_is_the_packed_tables_to_the_bit(dtype):
    """A device acting reads L positions of its G grid points, each from the two points around it; the
    programme reads G positions per level from the packed table: the same numbers, bit for bit."""
    rng = np.random.default_rng(7)
    n, levels, grid = 50, 4, (12.0, 28.0, 0.2)
    value = rng.normal(3.0, 2.0, (n, 80)).astype(dtype)
    x = rng.uniform(-5.0, 85.0, (n, levels, 1))  # grid positions, some beyond either end
    few = interpolate_units(value, x, grid)  # (N, L, 1): fewer positions than points
    many = interpolate_units(value, np.repeat(x, 80, axis=2), grid)  # (N, L, G): the packed table
    assert few.dtype == many.dtype
    np.testing.assert_array_equal(few, many[:, :, :1])
