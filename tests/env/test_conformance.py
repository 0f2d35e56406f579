"""PettingZoo's and Gymnasium's own checkers on the fleet's environments, and the dict view."""

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test
from pettingzoo.utils.conversions import parallel_to_aec

from fleet.env import ThermostatEnv, parallel_env
from fleet.errors import ConfigError

SMALL = {
    "fleet__sites__0__devices": 3,
    "fleet__sites__1__devices": 3,
    "topology__degree": 2,
    "horizon": "2h",
    "network__churn__failures_per_day": 48,
    "outputs__sample_devices": 2,
}
"""thermostats-small-v1 as 6 devices for 2 hours, with enough churn that devices go offline."""
NAMING = "We recommend agents to be named"
"""PettingZoo's one advice that the fleet does not take: agents are the device names (d00000)."""


def checked(run) -> None:
    """Run a checker; fail on any warning it gives but the naming advice."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    assert [str(w.message) for w in caught if NAMING not in str(w.message)] == []


def test_parallel_env_passes_pettingzoos_parallel_api_test():
    checked(lambda: parallel_api_test(parallel_env("thermostats-small-v1", **SMALL), num_cycles=1000))


def test_parallel_env_passes_pettingzoos_seed_test():
    checked(lambda: parallel_seed_test(lambda: parallel_env("thermostats-small-v1", **SMALL)))


def test_its_aec_conversion_passes_pettingzoos_api_test():
    checked(lambda: api_test(parallel_to_aec(parallel_env("thermostats-small-v1", **SMALL)), num_cycles=1000))


def test_thermostat_env_passes_gymnasiums_check_env():
    env = gymnasium.make("fleet/Thermostat-v1", horizon="2h")
    checked(lambda: check_env(env.unwrapped))
    assert isinstance(env.unwrapped, ThermostatEnv)


def test_thermostat_env_is_one_house():
    with pytest.raises(ConfigError, match="one house"):
        ThermostatEnv(fleet__sites=[{"name": "a", "devices": 2, "feeder_kw": 10, "network": {"wifi": 1.0}}])


def test_agents_are_the_devices_all_episode_and_offline_ones_say_so():
    env = parallel_env("thermostats-small-v1", **SMALL)
    obs, infos = env.reset(seed=2)
    assert env.agents == env.possible_agents == [f"d{i:05d}" for i in range(6)]
    offline = 0
    while env.agents:
        assert env.agents == env.possible_agents
        obs, rewards, terminated, truncated, infos = env.step({a: env.action_space(a).sample() for a in env.agents})
        offline += sum(not infos[a]["online"] for a in infos)
        assert set(obs) == set(rewards) == set(infos) == set(env.possible_agents)
    assert all(truncated.values()) and not any(terminated.values())
    assert offline > 0
    info = infos["d00000"]
    assert info["fleet"] is infos["d00005"]["fleet"] and info["fleet"]["time_s"] == 2 * 3600.0
    assert info["net/bytes_sent"] > 0 and info["fleet"]["kpi/energy_kwh"] > 0


def test_the_view_shows_the_batched_rows():
    env = parallel_env("thermostats-small-v1", **SMALL)
    obs, _ = env.reset(seed=5)
    twin = env.batched.__class__(env.batched.scenario)
    rows, _ = twin.reset(5)
    np.testing.assert_array_equal(np.stack([obs[a] for a in env.possible_agents]), rows.numpy())
    actions = {a: i % 4 for i, a in enumerate(env.possible_agents)}
    obs, rewards, *_ = env.step(actions)
    rows, reward, *_ = twin.step(np.arange(6) % 4)
    np.testing.assert_array_equal(np.stack([obs[a] for a in env.possible_agents]), rows.numpy())
    assert [rewards[a] for a in env.possible_agents] == reward.tolist()
    with pytest.raises(ValueError, match="missing 1: d00005"):
        env.step({a: 0 for a in env.possible_agents[:5]})
