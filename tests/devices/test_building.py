"""RC physics against its analytic solution, and the fleet that steps it."""

import dataclasses
import math

import numpy as np
import pytest

from devices.building import DeviceParams, ThermostatFleet, rc_step
from devices.config import BuildingConfig, HvacConfig, OccupancyConfig
from fleet.config import Constant, Normal

R, C = 4.0, 8.0  # degC/kW, kWh/degC: time constant RC = 32 h


def euler(temp, t_out, heat, resistance, capacitance, hours, dt_h=1 / 3600):
    """Independent reference: explicit Euler with one-second steps."""
    for _ in range(round(hours / dt_h)):
        temp = temp + dt_h / capacitance * ((t_out - temp) / resistance + heat)
    return temp


def test_many_ticks_follow_the_analytic_step_response():
    t0, t_out, heat = 20.0, -5.0, 5.0
    t_inf = t_out + R * heat  # 15 degC
    temp = np.array([t0])
    for _ in range(48 * 4):  # 48 h of 15-minute ticks
        temp = rc_step(temp, t_out, heat, R, C, 0.25)
    assert temp[0] == pytest.approx(t_inf + (t0 - t_inf) * math.exp(-48 / (R * C)), rel=1e-12)


def test_sixty_one_minute_steps_equal_one_hour_step():
    temp0 = np.array([15.0, 22.0, 30.0])
    t_out, heat = np.array([-10.0, 0.0, 35.0]), np.array([6.0, 0.3, -4.0])
    res, cap = np.array([3.0, 4.5, 6.0]), np.array([4.0, 7.0, 10.0])
    stepped = temp0
    for _ in range(60):
        stepped = rc_step(stepped, t_out, heat, res, cap, 1 / 60)
    np.testing.assert_allclose(stepped, rc_step(temp0, t_out, heat, res, cap, 1.0), rtol=1e-13)


def test_matches_a_fine_euler_integration():
    temp0, t_out, heat = 18.0, 2.0, 3.0
    expected = euler(temp0, t_out, heat, R, C, hours=2.0)
    assert rc_step(np.array([temp0]), t_out, heat, R, C, 2.0)[0] == pytest.approx(expected, abs=1e-4)


def test_steady_state_is_outdoor_plus_r_times_heat():
    res, heat = np.array([3.0, 5.0]), np.array([2.0, 0.4])
    temp = rc_step(np.array([20.0, 20.0]), 0.0, heat, res, C, dt_h=10_000.0)
    np.testing.assert_allclose(temp, [6.0, 2.0])


def test_stored_energy_equals_heat_in_minus_losses():
    """C (T1 - T0) = heat * dt - integral of (T - T_out)/R dt over the tick."""
    t_out, heat, hours, k = 0.0, 4.0, 3.0, 3000
    traj = [np.array([21.0])]
    for _ in range(k):
        traj.append(rc_step(traj[-1], t_out, heat, R, C, hours / k))
    temps = np.concatenate(traj)
    losses = np.trapezoid((temps - t_out) / R, dx=hours / k)
    assert C * (temps[-1] - temps[0]) == pytest.approx(heat * hours - losses, rel=1e-6)


def params(n=3, levels=(0.0, 1.0, 2.0), cop=3.0, gain=0.2):
    """A homogeneous fleet with the module's R and C."""
    full = lambda v: np.full(n, v, dtype=float)  # noqa: E731
    return DeviceParams(
        resistance=full(R),
        capacitance=full(C),
        internal_gain=full(gain),
        initial_temp=full(20.0),
        outdoor_offset=full(0.0),
        cop=full(cop),
        levels_kw=np.tile(levels, (n, 1)),
        occupancy_shift_h=full(0.0),
    )


def run(fleet, levels, t_out, hours, dt_s=900.0):
    for _ in range(round(hours * 3600 / dt_s)):
        power = fleet.step(levels, t_out, dt_s)
    return power


def test_top_level_heats_and_level_zero_drifts_to_outdoor_plus_gain():
    fleet = ThermostatFleet(params(n=2), "heat")
    power = run(fleet, np.array([2, 0]), np.full(2, 0.0), hours=2000)
    np.testing.assert_allclose(power, [2.0, 0.0])
    np.testing.assert_allclose(fleet.temp, [R * (3.0 * 2.0 + 0.2), R * 0.2])


def test_top_level_warms_within_hours():
    fleet = ThermostatFleet(params(n=1), "heat")
    run(fleet, np.array([2]), np.array([0.0]), hours=1)
    assert fleet.temp[0] > 20.0


def test_cool_mode_cools():
    fleet = ThermostatFleet(params(n=2), "cool")
    run(fleet, np.array([2, 0]), np.full(2, 30.0), hours=2000)
    np.testing.assert_allclose(fleet.temp, [30.0 + R * (-3.0 * 2.0 + 0.2), 30.0 + R * 0.2])


def test_step_returns_each_devices_own_level_power():
    p = params(n=2)
    p = dataclasses.replace(p, levels_kw=np.array([[0.0, 1.0, 2.0], [0.0, 1.5, 3.0]]))
    fleet = ThermostatFleet(p, "heat")
    np.testing.assert_allclose(fleet.step(np.array([1, 2]), np.zeros(2), 60.0), [1.0, 3.0])
    assert fleet.n_levels == 3


@pytest.mark.parametrize(
    "levels, match",
    [
        (np.array([0, 3]), r"\[0, 3\)"),
        (np.array([-1, 0]), r"\[0, 3\)"),
        (np.array([0, 1, 2]), r"shape \(2,\)"),
        (np.array([0.0, 1.0]), "integers"),
    ],
)
def test_step_rejects_bad_levels(levels, match):
    with pytest.raises(ValueError, match=match):
        ThermostatFleet(params(n=2), "heat").step(levels, np.zeros(2), 60.0)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        ThermostatFleet(params(), "defrost")


# --- drawing parameters --------------------------------------------------------------------


def draw(seed, n=500, **building):
    rng = np.random.default_rng(seed)
    return DeviceParams.draw(BuildingConfig(**building), HvacConfig(), OccupancyConfig(), n, rng)


def test_draw_shapes_and_supports():
    p = draw(0)
    assert p.n == 500 and p.levels_kw.shape == (500, 4)
    for name, (lo, hi) in {
        "resistance": (3, 6),
        "capacitance": (4, 10),
        "internal_gain": (0.1, 0.5),
        "initial_temp": (19, 21),
        "outdoor_offset": (-2, 2),
        "cop": (2.5, 3.5),
        "occupancy_shift_h": (-2, 2),
    }.items():
        values = getattr(p, name)
        assert values.shape == (500,) and lo <= values.min() and values.max() <= hi, name
    assert np.all(p.levels_kw[:, 0] == 0)
    size = p.levels_kw[:, 1:] / np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(size, size[:, :1].repeat(3, axis=1))  # one size factor per device
    assert 0.8 <= size.min() and size.max() <= 1.2


def test_same_seed_same_fleet_other_seed_other_fleet():
    a, b, c = draw(7), draw(7), draw(8)
    for name in ("resistance", "capacitance", "levels_kw", "occupancy_shift_h"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert not np.array_equal(getattr(a, name), getattr(c, name))


def test_constants_draw_nothing():
    """Turning one parameter into a constant does not change the draws of the next ones."""
    a = draw(3, outdoor_offset_c=Normal(mean=0, std=0.5, low=-2, high=2))
    b = draw(3, outdoor_offset_c=Constant(value=1.0))
    assert np.all(b.outdoor_offset == 1.0)
    np.testing.assert_array_equal(a.initial_temp, b.initial_temp)
    assert not np.array_equal(a.cop, b.cop)  # the offset's draws shifted the stream


def test_params_are_read_only():
    p = draw(0, n=3)
    with pytest.raises(ValueError):
        p.resistance[0] = 1.0
