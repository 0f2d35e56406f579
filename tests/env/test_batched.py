"""The batched environment: a step is a control tick of ``fleet run``, rewards from the scenario's
weights, offline devices keep acting, inputs checked where they enter."""

import numpy as np
import pytest
import torch

from devices.config import RuleBasedConfig
from fleet.env.batched import BatchedFleetEnv, resolve
from fleet.errors import ConfigError
from fleet.learners.base import LearnerContext
from fleet.learners.features import COLUMNS, N_FEATURES, TEMP_RANGE_C, feature_bounds, features
from fleet.learners.rule_based import RuleBasedLearner
from fleet.sim.engine import Simulation
from fleet.testing import _observation

LOSSY = {
    "fleet__sites": [
        {"name": "rural", "devices": 6, "feeder_kw": 15, "network": {"nb-iot": 1.0}},
        {"name": "village", "devices": 4, "feeder_kw": 10, "network": {"nb-iot": 0.5, "lte-m": 0.5}},
    ],
    "horizon": "6h",
    "network__link_cuts": [{"start": "2h", "end": "3h", "sites": ["village"]}],
    "network__churn__failures_per_day": 12,
    "topology__degree": 2,
}
"""nbiot-lossy-v1 shrunk: bursty loss, QoS 1, frequent churn and a link cut all active."""


def episode(env: BatchedFleetEnv, policy, seed: int) -> tuple[torch.Tensor, list]:
    """Run one episode with ``policy(env) -> actions (N,)``: the first observation and the step results."""
    first, _ = env.reset(seed)
    steps = []
    while not steps or not steps[-1][3].all():
        steps.append(env.step(policy(env)))
    return first, steps


def test_an_episode_is_the_fleet_run_of_the_same_scenario():
    """Acting as the rule-based thermostat does, the environment's run is the rule-based run of
    ``fleet run``: the same houses, sensor noise, churn and messages, tick for tick."""
    scenario = resolve("nbiot-lossy-v1", LOSSY)
    reference = Simulation(scenario)
    reference.run()
    env = BatchedFleetEnv(scenario)
    ctx = LearnerContext(env.n_devices, env.n_actions, "heat", np.random.default_rng(0))
    rule = RuleBasedLearner(RuleBasedConfig(), ctx)
    _, steps = episode(env, lambda e: rule.act(e.observation), scenario.seed)
    assert len(steps) == reference.ticks == scenario.horizon / scenario.control_period
    assert env.sim.fleet.kpis.as_dict() == reference.fleet.kpis.as_dict()
    np.testing.assert_array_equal(env.sim.fleet.buildings.temp, reference.fleet.buildings.temp)
    for counter in ("messages_sent", "bytes_sent", "messages_dropped"):
        np.testing.assert_array_equal(
            getattr(env.sim.network.stats, counter), getattr(reference.network.stats, counter)
        )
    assert env.sim.consensus_rounds == reference.consensus_rounds > 0
    assert env.sim.network.stats.messages_dropped.sum() > 0


def test_rewards_are_the_scenarios_weighted_cost_and_discomfort_per_device():
    """One house on a feeder it cannot overload: reward = -(power x price + weight x degrees
    outside the band at the end of the tick) x hours, with the band and price sensed for the tick."""
    weight = 7.0
    env = BatchedFleetEnv(
        resolve(
            "thermostats-small-v1",
            {
                "fleet__sites": [{"name": "a", "devices": 3, "feeder_kw": 100, "network": {"wifi": 1.0}}],
                "topology__degree": 2,
                "horizon": "3h",
                "reward__discomfort_per_degh": weight,
                "outputs__sample_devices": 3,
            },
        )
    )
    env.reset(4)
    gen = torch.Generator().manual_seed(0)
    for _ in range(180):
        sensed = env.observation
        _, reward, _, _, infos = env.step(torch.randint(0, env.n_actions, (3,), generator=gen))
        temp = infos["temp_c"]
        outside = np.maximum(sensed.band_lo - temp, 0) + np.maximum(temp - sensed.band_hi, 0)
        by_hand = -(infos["power_kw"] * sensed.price + weight * outside) / 60.0
        np.testing.assert_allclose(reward.numpy(), by_hand, rtol=1e-6)


def test_offline_devices_stay_and_act_on_their_houses():
    env = BatchedFleetEnv(resolve("nbiot-lossy-v1", {**LOSSY, "network__churn__failures_per_day": 48}))
    env.reset(1)
    top = env.n_actions - 1
    seen_offline = 0
    for k in range(150):
        level = k % 2 * top  # everyone off, then everyone at the top level
        _, _, _, _, infos = env.step(np.full(env.n_devices, level))
        offline = ~infos["online"]
        seen_offline += offline.sum()
        np.testing.assert_array_equal(infos["power_kw"][offline] > 0, level > 0)
    assert seen_offline > 0


def test_same_seed_same_episode_and_a_seedless_reset_draws_the_next_seed_from_the_last():
    env = BatchedFleetEnv(resolve("thermostats-small-v1", {"horizon": "1h"}))
    constant = lambda e: np.ones(e.n_devices, np.int64)  # noqa: E731
    first, steps = episode(env, constant, 3)
    again, steps_again = episode(env, constant, 3)
    other, _ = episode(env, constant, 4)
    assert torch.equal(first, again) and not torch.equal(first, other)
    for a, b in zip(steps, steps_again):
        assert all(torch.equal(x, y) for x, y in zip(a[:4], b[:4]))
    env.reset(3)
    seedless, _ = env.reset()
    twin = BatchedFleetEnv(env.scenario)
    twin.reset(3)
    assert torch.equal(twin.reset()[0], seedless) and not torch.equal(seedless, first)


def test_actions_of_the_wrong_shape_or_range_are_refused_naming_what_was_expected():
    env = BatchedFleetEnv(resolve("thermostats-small-v1", {"horizon": "1h"}))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(100, np.int64))
    env.reset(0)
    with pytest.raises(ValueError, match=r"shape \(N devices,\) = \(100,\)"):
        env.step(np.zeros(99, np.int64))
    with pytest.raises(ValueError, match=r"integer HVAC levels in \[0, 4\)"):
        env.step(np.full(100, 4))
    with pytest.raises(ValueError, match="integer"):
        env.step(np.zeros(100))


def test_overrides_name_their_field_when_invalid():
    assert resolve("thermostats-small-v1", {"fleet__sites__0__devices": 7}).n_devices == 57
    with pytest.raises(ConfigError, match="horizon"):
        resolve("thermostats-small-v1", {"horizon": "-1h"})
    with pytest.raises(ConfigError, match="override when="):
        resolve("thermostats-small-v1", {"when": object()})


def test_feature_bounds_are_the_features_of_the_extreme_conditions():
    """At the edges of TEMP_RANGE_C and the caps, the features are the bounds' own values."""
    low, high = feature_bounds()
    assert low.shape == high.shape == (N_FEATURES,) == (len(COLUMNS),)
    obs = _observation(2, 0, np.random.default_rng(0))
    cold, hot = TEMP_RANGE_C
    edge = obs.__class__(
        **{
            **obs.__dict__,
            "temp_c": np.array([cold, hot]),
            "outdoor_c": np.array([cold, hot]),
            "band_lo": np.array([cold, hot]),
            "band_hi": np.array([cold, hot]),
        }
    )
    x = features(edge, "cpu").numpy()
    for col in ("indoor", "outdoor", "band_lo", "band_hi"):
        i = COLUMNS.index(col)
        assert (x[0, i], x[1, i]) == (low[i], high[i])


def test_an_episode_sees_the_scenarios_forecast_to_its_last_step():
    env = BatchedFleetEnv(
        resolve("thermostats-small-v1", {"horizon": "3h", "weather__forecast": {"issue_period": "1h"}})
    )
    env.reset(0)
    world, done = env.sim.world, False
    while not done:
        t, obs = env.sim.env.now, env.observation
        np.testing.assert_allclose(
            obs.outdoor_ahead, world.forecast.ahead(t)[None, :] + world.params.outdoor_offset[:, None], atol=1e-12
        )
        done = env.step(np.zeros(env.n_devices, np.int64))[3].all()
    assert env.sim.env.now == 3 * 3600.0 and env.observation.outdoor_ahead.shape == (100, 24)
