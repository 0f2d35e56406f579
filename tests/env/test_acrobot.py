"""The batched multitask Acrobot against gymnasium's own AcrobotEnv, and PettingZoo's checkers on it."""

import numpy as np
import pytest
from gymnasium.envs.classic_control.acrobot import AcrobotEnv
from pettingzoo.test import parallel_api_test, parallel_seed_test

from fleet.env.acrobot import EPISODE_END, TIME_LIMIT, AcrobotParallelEnv, Links
from fleet.errors import ConfigError
from tests.env.test_conformance import checked


def swing(state: np.ndarray) -> np.ndarray:
    """Torque in the direction the second joint turns: pumps energy in, reaching the goal in
    70-130 steps with nominal links (and never with the opposite torque)."""
    return np.where(state[:, 3] > 0, 2, 0)


def twins(env: AcrobotParallelEnv) -> list[AcrobotEnv]:
    """One gymnasium AcrobotEnv per agent, with the agent's links and its current state."""
    out = []
    for i in range(len(env.possible_agents)):
        twin = AcrobotEnv()
        twin.reset(seed=0)
        twin.LINK_MASS_1 = twin.LINK_MASS_2 = env.links.mass[i]
        twin.LINK_LENGTH_1 = twin.LINK_LENGTH_2 = env.links.length[i]
        twin.LINK_MOI = env.links.inertia[i]
        twin.state = env.acrobots.state[i].copy()
        out.append(twin)
    return out


@pytest.mark.parametrize("links", ["nominal", "extreme"])
def test_every_agent_steps_as_gymnasiums_acrobot_through_goals_and_time_limits(links):
    """Agents 0-1 swing up (and start again at once), 2-3 act at random until the time limit."""
    n = 4
    chosen = Links.nominal(n) if links == "nominal" else Links.extreme(n, np.random.default_rng(3))
    env = AcrobotParallelEnv(links=chosen)
    env.reset(seed=1)
    gym, rng, ends = twins(env), np.random.default_rng(0), []
    for t in range(TIME_LIMIT + 10):
        acts = np.where(np.arange(n) < 2, swing(env.acrobots.state), rng.integers(0, 3, n))
        obs, rewards, terminated, truncated, infos = env.step(dict(zip(env.possible_agents, acts.tolist())))
        assert not any(terminated.values()) and not any(truncated.values())
        for i, agent in enumerate(env.possible_agents):
            their_obs, their_reward, their_goal, _, _ = gym[i].step(int(acts[i]))
            assert rewards[agent] == their_reward == (0.0 if their_goal else -1.0)
            end = infos[agent][EPISODE_END]
            if end is None:
                np.testing.assert_allclose(obs[agent], their_obs, rtol=1e-6, atol=1e-6)
                continue
            ends.append((i, t + 1, end))
            assert end == ("terminated" if their_goal else "truncated")
            gym[i].state = env.acrobots.state[i].copy()  # the agent went on in a fresh episode
            assert np.abs(env.acrobots.state[i]).max() <= 0.1
    swung = [(i, end) for i, t, end in ends if i < 2]
    assert len(swung) >= 2 and {end for _, end in swung} == {"terminated"}
    limited = sorted((i, t, end) for i, t, end in ends if i >= 2)
    assert limited == [(2, TIME_LIMIT, "truncated"), (3, TIME_LIMIT, "truncated")]


def test_links_are_drawn_from_the_two_extreme_bands():
    links = Links.extreme(10_000, np.random.default_rng(0))
    for factor in (links.mass, links.length, links.inertia):
        low, high = factor < 1, factor > 1
        assert (low | high).all() and factor[low].min() >= 0.5 and factor[low].max() < 0.75
        assert factor[high].min() >= 1.25 and factor[high].max() < 1.5
        assert abs(low.mean() - 0.5) < 0.02  # the two bands are equally wide
    assert not np.array_equal(links.mass, links.length)


def test_tasks_differ_by_task_seed_and_the_dynamics_by_the_links():
    a, b = AcrobotParallelEnv(3, task_seed=0), AcrobotParallelEnv(3, task_seed=1)
    assert not np.array_equal(a.links.mass, b.links.mass)
    np.testing.assert_array_equal(a.links.mass, AcrobotParallelEnv(3, task_seed=0).links.mass)
    for env in (a, b):
        env.reset(seed=0)
    obs_a, *_ = a.step(dict.fromkeys(a.possible_agents, 2))
    obs_b, *_ = b.step(dict.fromkeys(b.possible_agents, 2))
    assert not np.allclose(obs_a["acrobot_0"], obs_b["acrobot_0"])  # same start, other links


def test_passes_pettingzoos_parallel_api_and_seed_tests():
    checked(lambda: parallel_api_test(AcrobotParallelEnv(3, max_cycles=600), num_cycles=1000))
    checked(lambda: parallel_seed_test(lambda: AcrobotParallelEnv(3, max_cycles=600)))


def test_the_pettingzoo_episode_ends_for_all_agents_after_max_cycles():
    env = AcrobotParallelEnv(2, max_cycles=3)
    env.reset(seed=0)
    for _ in range(3):
        assert env.agents == env.possible_agents
        _, _, terminated, truncated, _ = env.step(dict.fromkeys(env.possible_agents, 1))
    assert env.agents == [] and all(truncated.values()) and not any(terminated.values())


def test_refuses_links_it_cannot_swing_naming_the_field():
    with pytest.raises(ConfigError, match="links.length: needs one finite positive value per agent"):
        AcrobotParallelEnv(links=Links(np.ones(2), np.array([1.0, -1.0]), np.ones(2)))
    with pytest.raises(ConfigError, match="links.inertia: .* as many as links.mass"):
        AcrobotParallelEnv(links=Links(np.ones(2), np.ones(2), np.ones(3)))
    with pytest.raises(ConfigError, match="n_agents: 0"):
        AcrobotParallelEnv(0)
