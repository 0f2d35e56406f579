"""The planner learners: identification by RLS, planning, the fallback, diffusion of identification."""

import copy
from dataclasses import replace

import numpy as np
import pytest

from devices.building import rc_step
from devices.config import RuleBasedConfig
from devices.thermostat import RuleBasedThermostat
from fleet.errors import ConfigError
from fleet.learners import LearnerContext, make_learner
from fleet.learners.base import Deliveries
from fleet.learners.planner.config import IdentificationConfig
from fleet.learners.planner.identification import RcIdentifier
from fleet.testing import _observation

DT = 900.0
LEVELS_KW = np.array([0.0, 1.0, 2.0, 3.0])


def houses(n: int, rng: np.random.Generator, spread: float = 1.0) -> dict[str, np.ndarray]:
    """R, C, COP and internal gains of ``n`` houses, drawn as the scenarios draw them (``spread``
    scales their spread around the middle of the range)."""

    def draw(low: float, high: float) -> np.ndarray:
        mid, half = (low + high) / 2, (high - low) / 2 * spread
        return rng.uniform(mid - half, mid + half, n)

    return {"r": draw(3, 6), "c": draw(4, 10), "cop": draw(2.5, 3.5), "q": draw(0.1, 0.5)}


def truth(h: dict) -> np.ndarray:
    """(3, N) what the identification should find: time constant R C (h), R COP (degC/kW), R Q (degC)."""
    return np.stack([h["r"] * h["c"], h["r"] * h["cop"], h["r"] * h["q"]])


class Street:
    """Houses ``h`` heated through a winter day's outdoor cycle (rc_step), their readings fed to
    identifiers; the houses go on from where they were at each call."""

    def __init__(self, h: dict, noise: float, rng: np.random.Generator, open_loop: bool = False) -> None:
        self.h, self.noise, self.rng, self.open_loop = h, noise, rng, open_loop
        self.n = len(h["r"])
        self.thermostat = RuleBasedThermostat(RuleBasedConfig(), "heat", 4, self.n)
        self.temp, self.tick = np.full(self.n, 20.0), 0

    def feed(self, ident: RcIdentifier, days: float) -> None:
        """``days`` of a deadband thermostat's levels (random levels, which do not depend on the
        noisy readings, if ``open_loop``), read with Gaussian sensor noise ``noise``."""
        h, rng = self.h, self.rng
        for _ in range(int(round(days * 86400 / DT))):
            hour = self.tick * DT / 3600 % 24
            outdoor = 2.0 + 5.0 * np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0, 0.5, self.n)
            lo = np.full(self.n, 20.0 if hour < 7 or hour >= 17 else 16.0)
            measured = self.temp + rng.normal(0, self.noise, self.n) if self.noise else self.temp
            ident.close(measured)
            level = rng.integers(0, 4, self.n) if self.open_loop else self.thermostat.act(measured, lo, lo + 3)
            power = LEVELS_KW[level]
            ident.open(measured, outdoor, power)
            self.temp = rc_step(self.temp, outdoor, h["cop"] * power + h["q"], h["r"], h["c"], DT / 3600)
            self.tick += 1


def identified(ident: RcIdentifier, *extra) -> np.ndarray:
    """(3, N) the estimates (the prior's where not physical)."""
    _, *model = ident.physical(ident.estimate(*extra))
    return np.stack(model)


def test_on_noise_free_data_rls_recovers_the_exact_rc_parameters():
    rng = np.random.default_rng(0)
    h = houses(20, rng)
    # no noise: no sensor noise to compensate, and a prior that weighs nothing against exact data
    ident = RcIdentifier(IdentificationConfig(sensor_noise_c=0, noise_c=1e-6), 20, DT)
    Street(h, 0.0, rng).feed(ident, 5)
    np.testing.assert_allclose(identified(ident), truth(h), rtol=1e-6)


def errors_over_time(open_loop: bool, seed: int) -> np.ndarray:
    """(3 lengths of data, 3 quantities): the median relative error of 40 houses' estimates
    after 1, 4 and 13 days of data with sensor noise."""
    rng = np.random.default_rng(seed)
    h = houses(40, rng)
    ident = RcIdentifier(IdentificationConfig(), 40, DT)
    errors, street = [], Street(h, 0.1, rng, open_loop)
    for days in (1, 3, 9):
        street.feed(ident, days)
        errors.append(np.median(np.abs(identified(ident) / truth(h) - 1), axis=1))
    return np.array(errors)


def test_with_sensor_noise_the_error_shrinks_with_data():
    """Bias-compensated least squares are consistent where the levels do not depend on the
    noise: every error shrinks. A thermostat's levels do (it switches on a noisy reading), which
    leaves a bias of a few percent on the time constant; the rest still shrinks."""
    errors = errors_over_time(open_loop=True, seed=1)
    assert (errors[-1] < 0.5 * errors[0]).all(), errors  # 13 times the data: about a third of the error
    assert errors[-1, :2].max() < 0.05, errors  # time constant and gain within 5 % after 13 days
    errors = errors_over_time(open_loop=False, seed=1)
    assert (errors[-1, 1:] < errors[0, 1:]).all(), errors
    assert errors[-1, :2].max() < 0.1, errors  # time constant and gain within 10 % after 13 days


def test_estimates_that_are_not_physical_are_rejected_and_the_prior_kept():
    cfg = IdentificationConfig()
    ident = RcIdentifier(cfg, 3, DT)
    a = np.exp(-DT / 3600 / 30)
    theta = np.array([[a, (1 - a) * 10, (1 - a) * 1], [a, -(1 - a) * 10, 0.0], [1.01, 0.1, 0.0]])  # ok, cools, grows
    ok, tau, gain, internal = ident.physical(theta)
    np.testing.assert_array_equal(ok, [True, False, False])
    np.testing.assert_allclose([tau[0], gain[0], internal[0]], [30, 10, 1], rtol=1e-9)
    np.testing.assert_allclose(gain[1:], cfg.prior_gain_c_per_kw)


def context(n: int, dt: float = DT, **changes) -> LearnerContext:
    from fleet.testing import _context

    return replace(_context(n, 0), control_period_s=dt, levels_kw=np.tile(LEVELS_KW, (n, 1)), **changes)


@pytest.mark.parametrize(
    "params, changes, field",
    [
        ({"replan_period": "10min"}, {}, "learner.params.replan_period"),
        ({"horizon": "30h"}, {"forecast_lead_h": tuple(range(1, 25))}, "learner.params.horizon"),
        ({"horizon": "30min"}, {}, "learner.params.horizon"),
    ],
)
def test_periods_that_do_not_fit_are_refused_naming_the_field(params, changes, field):
    with pytest.raises(ConfigError, match=field):
        make_learner("planner-v1", params, context(4, **changes))


def outdoor_at(hours: np.ndarray) -> np.ndarray:
    """A winter day's outdoor cycle, degC, at ``hours`` from the start."""
    return 2.0 + 5.0 * np.sin(2 * np.pi * (hours - 9) / 24)


def run_learner(learner, n: int, ticks: int, h: dict, start_temp: float, rng, drift_c_per_h: float | np.ndarray = 0.0):
    """Drive ``learner`` on houses ``h`` (rc_step, band 20-23, a perfect forecast of a daily
    outdoor cycle), its sensors reading 0.1 degC of noise and a drift of ``drift_c_per_h`` (N,)
    per hour from the start: returns the indoor temperatures (T, N) after each tick."""
    temp = np.full(n, start_temp)
    out = []
    hours = getattr(learner, "lookahead_h", ())
    for tick in range(ticks):
        now = tick * DT / 3600
        obs = _observation(n, tick, rng, hours)
        outdoor = np.full(n, outdoor_at(now))
        ahead = np.tile(outdoor_at(now + np.asarray(obs.forecast_lead_h)), (n, 1))
        reading = temp + rng.normal(0, 0.1, n) + drift_c_per_h * now
        obs = replace(obs, temp_c=reading, outdoor_c=outdoor, outdoor_ahead=ahead)
        level = learner.act(obs)
        temp = rc_step(temp, outdoor, h["cop"] * LEVELS_KW[level] + h["q"], h["r"], h["c"], DT / 3600)
        out.append(temp)
        learner.observe(np.zeros(n))
        if (tick + 1) % learner.update_every == 0:
            learner.update((tick + 1) * DT)
    return np.array(out)


def test_the_planner_holds_the_band_once_it_has_a_model():
    rng = np.random.default_rng(2)
    h = houses(4, rng)
    learner = make_learner("planner-alone-v1", {"identification": {"min_data": "12h"}}, context(4))
    temps = run_learner(learner, 4, 3 * 96, h, 21.0, rng)
    assert learner.planning.all()
    last_day = temps[-96:]
    assert (last_day > 19.8).all() and (last_day < 23.2).all()  # the band 20-23, within sensor noise


def test_a_house_that_defies_physics_is_never_planned_for_and_never_heated_past_the_band():
    rng = np.random.default_rng(3)
    h = houses(2, rng)
    h["cop"] = np.array([3.0, -3.0])  # the second "heat pump" cools: no physical model explains it
    learner = make_learner("planner-alone-v1", {"identification": {"min_data": "6h"}}, context(2))
    temps = run_learner(learner, 2, 2 * 96, h, 21.0, rng)
    np.testing.assert_array_equal(learner.planning, [True, False])
    assert learner.ident.rejected > 0
    assert temps[:, 1].max() < 23.0  # the thermostat it falls back to never heats past the band


def test_a_device_whose_identification_diverges_goes_back_to_the_thermostat_counted():
    rng = np.random.default_rng(6)
    h = houses(2, rng)
    params = {"identification": {"min_data": "12h", "memory": "1d"}}
    learner = make_learner("planner-alone-v1", params, context(2))
    run_learner(learner, 2, 2 * 96, h, 21.0, rng)
    assert learner.planning.all() and learner.ident.rejected == 0
    # the second sensor fails, its reading climbing 0.5 degC an hour: no RC house warms so (a >= 1)
    temps = run_learner(learner, 2, 2 * 96, h, 21.0, rng, drift_c_per_h=np.array([0.0, 0.5]))
    np.testing.assert_array_equal(learner.planning, [True, False])
    assert learner.ident.rejected > 0  # counted, once per re-plan that rejects it
    assert temps[:, 0].max() < 23.2 and temps[:, 1].max() < 23.0  # the band (sensor noise); the second cools


def test_a_house_taken_below_the_plans_grid_is_heated_back_by_the_thermostat_counted():
    rng = np.random.default_rng(7)
    h = houses(2, rng)
    learner = make_learner("planner-alone-v1", {"identification": {"min_data": "12h"}}, context(2))
    run_learner(learner, 2, 96, h, 21.0, rng)
    assert learner.planning.all()
    # a cold snap (or an outage) left both houses at 8 degC, below the grid's 12: the plan's cost-to-go
    # is flat there, so only the thermostat brings them back to the band (20-23)
    temps = run_learner(learner, 2, 96, h, 8.0, rng)
    assert (temps[-24:] > 19.8).all()  # back in the band within the day, within sensor noise
    assert learner.off_grid > 0  # counted


def test_a_model_that_calls_for_heat_above_the_band_is_overruled():
    learner = make_learner("planner-alone-v1", {}, context(2))
    learner.planning[:] = True
    learner.age = 0
    learner.model = np.array([[30.0, 30.0], [12.0, 12.0], [1.0, 1.0]])
    learner.values[1] = np.linspace(100, 0, learner.values.shape[2])  # the hotter, the better: heat always
    obs = replace(_observation(2, 0, np.random.default_rng(0), learner.lookahead_h), temp_c=np.array([22.0, 23.5]))
    np.testing.assert_array_equal(learner.act(obs), [3, 0])


def deliver(sender_stats: np.ndarray, receiver: int, senders: list[int]) -> Deliveries:
    """Deliveries of the statistics (S, 9) of ``senders`` to ``receiver``."""
    s = len(senders)
    return Deliveries.one_message_each(
        np.full(s, receiver), np.array(senders), [sender_stats.astype(np.float32)], np.zeros(s)
    )


def hours_to_good_model(learner, street: Street, h: dict, limit_h: int = 96) -> int:
    """Hours of own data until device 0's time constant and gain are both within 15 %."""
    for hour in range(limit_h):
        _, *model = learner.ident.physical(learner.ident.estimate(*learner._neighbours()))
        if (np.abs(np.stack(model)[:2, 0] / truth(h)[:2, 0] - 1) < 0.15).all():
            return hour
        street.feed(learner.ident, 1 / 24)
    return limit_h


def test_a_fresh_device_with_neighbours_reaches_a_good_model_in_fewer_hours_than_alone():
    rng = np.random.default_rng(4)
    h = houses(3, rng, spread=0.2)  # similar houses: a street of one builder
    elders = RcIdentifier(IdentificationConfig(), 3, DT)
    Street(h, 0.1, rng).feed(elders, 10)

    alone = make_learner("planner-alone-v1", {}, context(3))
    with_neighbours = make_learner("planner-v1", {}, context(3))
    with_neighbours.inbox("params", deliver(elders.statistics()[1:], 0, [1, 2]))
    hours_alone = hours_to_good_model(alone, Street(h, 0.1, np.random.default_rng(5)), h)
    hours_with = hours_to_good_model(with_neighbours, Street(h, 0.1, np.random.default_rng(5)), h)
    assert hours_with < hours_alone, (hours_with, hours_alone)
    assert hours_with <= 6


def test_statistics_no_device_could_have_are_rejected_and_counted():
    learner = make_learner("planner-v1", {}, context(3))
    good = np.zeros((1, 9))
    good[0, [0, 3, 5]] = [400.0, 4.0, 96.0]
    bad = np.vstack([good * np.nan, -good, good * 1e6])  # not finite, negative diagonal, too many samples
    learner.inbox("params", deliver(np.vstack([good, bad]), 0, [1, 2, 1, 2]))
    assert learner.rejected_stats == 3
    kept = np.zeros(len(learner.edge_time), bool)
    kept[learner.topology.edge_index(np.array([0]), np.array([1]))] = True  # the good one, on the edge 1 -> 0
    np.testing.assert_array_equal(np.isfinite(learner.edge_time), kept)


def test_the_engine_gives_a_planner_its_schedule_and_tariff_over_its_horizon():
    from fleet.sim.engine import Simulation
    from tests.sim.conftest import shrink

    sim = Simulation(shrink(**{"learner.name": "planner-v1", "control_period": "15min"}))
    t = 86400 + 14.5 * 3600
    obs = sim.fleet.sense(*sim.sense(t))
    hours = np.asarray(sim.fleet.controller.lookahead_h)
    np.testing.assert_allclose(hours, 0.25 * np.arange(1, 97))  # the 96 ticks of a day after this one
    np.testing.assert_array_equal(obs.lookahead.hours, hours)
    for k in (0, 10, 95):
        lo, hi = sim.world.occupancy.band(t + 3600 * hours[k])
        np.testing.assert_array_equal(obs.lookahead.band_lo[:, k], lo)
        np.testing.assert_array_equal(obs.lookahead.band_hi[:, k], hi)
        np.testing.assert_array_equal(obs.lookahead.price[:, k], sim.world.tariff.price(t + 3600 * hours[k]))


PLANNING = {
    "fleet.sites": "[{name: a, devices: 6, feeder_kw: 20}]",
    "topology.degree": 2,
    "control_period": "15min",
    "horizon": "2d",
    "workloads.telemetry.enabled": "false",
    "workloads.consensus.enabled": "false",
    "learner.name": "planner-v1",
    "learner.params.identification.min_data": "12h",
}
"""Six devices for two days at 15-minute ticks, planning every 2 hours from the first plan after 12 hours of data."""


def test_the_engine_computes_a_planners_schedule_only_when_it_plans(monkeypatch):
    from fleet.learners import base
    from fleet.sim.engine import Simulation
    from tests.sim.conftest import shrink

    computed, schedule = [], base.schedule
    monkeypatch.setattr(base, "schedule", lambda *args: computed.append(args[2]) or schedule(*args))
    sim = Simulation(shrink(**PLANNING))
    sim.run()
    assert sim.fleet.controller.planning.all()
    first_hours = np.array([times[0] for times in computed if len(times) == 96]) / 3600  # not the 4-hour previews
    assert 0 < len(first_hours) <= 2 * 24 // 2  # at most once per plan (every 2 h), not once per tick (192 ticks)
    np.testing.assert_allclose((first_hours - 0.25) % 2, 0)  # each at a re-plan tick: its first hour a tick after


def test_a_planner_decides_the_same_on_a_lazy_lookahead_as_on_one_computed_at_every_tick(tmp_path, monkeypatch):
    from fleet.learners import base
    from fleet.results import execute
    from fleet.sim import engine
    from tests.sim.conftest import shrink

    def eager(*args):
        ahead = base.lookahead(*args)
        ahead.band_lo  # noqa: B018 (computed at the tick, as before the lookahead was lazy)
        return ahead

    lazy, _ = execute(shrink(**PLANNING), tmp_path / "lazy")
    monkeypatch.setattr(engine, "lookahead", eager)
    eager_run, _ = execute(shrink(**PLANNING), tmp_path / "eager")
    metrics = (lazy.path / "metrics.csv").read_text()
    assert metrics == (eager_run.path / "metrics.csv").read_text()
    assert "planner/planning" in metrics.splitlines()[0]


@pytest.mark.parametrize(
    "setting, message",
    [
        ("learner.params.replan_period=30s", "learner.params.replan_period: 30 s is shorter than the control period"),
        ("learner.params.horizon=25h", "learner.params.horizon: 25 h is beyond the weather forecast's last lead"),
    ],
)
def test_the_cli_refuses_periods_that_do_not_fit_with_exit_2_and_writes_nothing(tmp_path, setting, message):
    from click.testing import CliRunner

    from fleet.cli import main

    out = tmp_path / "run"
    args = ["run", "thermostats-small-v1", "-o", str(out), "--set", "learner.name=planner-v1", "--set", setting]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


# --- new installs: devices reset to fresh ones -------------------------------------------------

DEVICE_AXIS = {
    "ident.info": 0,
    "ident.vector": 0,
    "ident.pending": 0,
    "fallback.on": 0,
    "values": 1,
    "model": 1,
    "planning": 0,
    "joined": 0,
    "publisher.last": 0,
    "publisher.publishes": 0,
    "publisher.since_dense": 0,
    "publisher.suppressed": 0,
}
"""Per-device entries of the planners' state and their device axis (the edges' go by receiver)."""


def flat(state: dict, prefix: str = "") -> dict:
    """A nested state as {dotted key: value}."""
    out = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def planner_that_ran(name: str, n: int, rng) -> object:
    """A planner of ``n`` houses after a day of control, planning on its models, with its
    neighbours' statistics received (planner-v1)."""
    learner = make_learner(name, {"identification": {"min_data": "6h"}}, context(n))
    run_learner(learner, n, 96, houses(n, rng), 21.0, rng)
    if learner.communicates:
        stats = learner.ident.statistics()
        learner.outbox(np.ones(n, bool))
        topo = learner.topology
        learner.inbox(
            "params",
            Deliveries.one_message_each(
                topo.receiver, topo.sender, [stats[topo.sender].astype(np.float32)], np.zeros(len(topo.sender))
            ),
        )
    return learner


@pytest.mark.parametrize("name", ["planner-v1", "planner-alone-v1"])
def test_reset_rows_become_a_fresh_learners_and_the_other_rows_stay(name):
    n, rows, t = 6, np.array([1, 4]), 86400.0
    learner = planner_that_ran(name, n, np.random.default_rng(6))
    assert learner.planning.all()
    before = flat(copy.deepcopy(learner.state_dict()))  # the state holds the live arrays
    learner.reset(rows, t)
    after = flat(learner.state_dict())
    fresh = flat(make_learner(name, {"identification": {"min_data": "6h"}}, context(n)).state_dict())
    if learner.communicates:
        fresh["joined"] = np.full(n, -np.inf)
        fresh["joined"][rows] = t  # when they joined: the one entry that is not a fresh fleet's
    others = np.setdiff1d(np.arange(n), rows)
    for key, value in after.items():
        if key in DEVICE_AXIS:
            axis = DEVICE_AXIS[key]
            np.testing.assert_array_equal(np.take(value, rows, axis), np.take(fresh[key], rows, axis), err_msg=key)
            np.testing.assert_array_equal(np.take(value, others, axis), np.take(before[key], others, axis), err_msg=key)
        elif key.startswith("edge_"):
            into = np.isin(learner.topology.receiver, rows)
            np.testing.assert_array_equal(value[into], fresh[key][into], err_msg=key)
            np.testing.assert_array_equal(value[~into], before[key][~into], err_msg=key)
            assert not np.array_equal(before[key][into], fresh[key][into]), key
        else:  # counters of the whole fleet
            np.testing.assert_array_equal(value, before[key], err_msg=key)
    for key in ("ident.info", "values", "planning"):  # what the reset changed
        assert not np.array_equal(
            np.take(before[key], rows, DEVICE_AXIS[key]), np.take(fresh[key], rows, DEVICE_AXIS[key])
        )


def test_the_rule_based_thermostat_resets_a_device_to_off():
    learner = make_learner("rule-based-v1", {}, context(4))
    learner.thermostat.on[:] = True
    learner.reset(np.array([0, 2]), 0.0)
    np.testing.assert_array_equal(learner.thermostat.on, [False, True, False, True])


def test_a_new_install_hears_only_the_statistics_published_from_its_install_on():
    learner = make_learner("planner-v1", {}, context(3))
    learner.reset(np.array([0]), 3600.0)
    stats = np.zeros((2, 9))
    stats[:, [0, 3, 5]] = [400.0, 4.0, 96.0]
    older = Deliveries.one_message_each(
        np.array([0, 0]), np.array([1, 2]), [stats.astype(np.float32)], np.array([1800.0, 3600.0])
    )
    learner.inbox("params", older)
    assert learner.rejected_stats == 0  # not rejected: never heard
    kept = np.zeros(len(learner.edge_time), bool)
    kept[learner.topology.edge_index(np.array([0]), np.array([2]))] = True  # published at the install
    np.testing.assert_array_equal(np.isfinite(learner.edge_time), kept)
