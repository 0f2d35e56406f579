"""The project's learners on PettingZoo ParallelEnvs: a bandit whose best return is known, the
fleet's own environment, diffusion's combine worked by hand, episodes that agents restart on
their own, and what train() refuses."""

import networkx as nx
import numpy as np
import pytest
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv

from fleet.env import parallel_env
from fleet.env.acrobot import EPISODE_END
from fleet.env.train import DIFF_DAC, mixing_matrix, random_returns, train
from fleet.errors import ConfigError
from fleet.learners.stacked import ActorCritic, RMSprop

LENGTH = 5
HORIZON = 19.5
"""Discount horizon in seconds of one-second steps: a discount of exp(-1 / 19.5) = 0.95 per step."""


@pytest.fixture(autouse=True)
def one_thread():
    """Tensors of 2 agents: torch's second thread only waits (ten times slower on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Bandit(ParallelEnv):
    """``n`` agents see (1, 0) or (0, 1) at random; reward 1 for the action equal to the index of
    the 1, else 0; episodes of LENGTH steps cut by a time limit. Best return LENGTH; random LENGTH / 2."""

    metadata = {"name": "bandit_v0"}

    def __init__(self, box=True, n=2) -> None:
        self.possible_agents = [f"a_{i}" for i in range(n)]
        self.box = box
        self.observation_spaces = {
            a: spaces.Box(0.0, 1.0, (2,), np.float32) if box else spaces.Discrete(2) for a in self.possible_agents
        }
        self.action_spaces = {a: spaces.Discrete(2) for a in self.possible_agents}

    def observation_space(self, agent):
        return self.observation_spaces[agent]

    def action_space(self, agent):
        return self.action_spaces[agent]

    def _observe(self):
        self.cue = self.rng.integers(0, 2, len(self.possible_agents))
        return {a: np.eye(2, dtype=np.float32)[c] for a, c in zip(self.possible_agents, self.cue)}

    def reset(self, seed=None, options=None):
        if seed is not None or not hasattr(self, "rng"):
            self.rng = np.random.default_rng(seed)
        self.agents, self.t = list(self.possible_agents), 0
        return self._observe(), {a: {} for a in self.agents}

    def step(self, actions):
        rewards = {a: float(actions[a] == c) for a, c in zip(self.possible_agents, self.cue)}
        self.t += 1
        done = self.t == LENGTH
        flags = dict.fromkeys(self.agents, False), dict.fromkeys(self.agents, done)
        out = (self._observe(), rewards, *flags, {a: {} for a in self.agents})
        if done:
            self.agents = []
        return out


@pytest.mark.parametrize("learner", ["independent-v1", "diffusion-v1", "centralized-v1"])
def test_every_learner_learns_the_bandits_best_response(learner):
    result = train(Bandit(), learner, {"n_steps": 5, "discount_horizon": HORIZON}, steps=3000, seed=0, points=6)
    assert [row["step"] for row in result.curve] == [500, 1000, 1500, 2000, 2500, 3000]
    assert all(row["episodes"] == 2 * 100 for row in result.curve)  # 100 episodes of each of the 2 agents
    assert result.curve[-1]["mean_return"] > 0.9 * LENGTH  # the best is LENGTH; random earns LENGTH / 2
    obs = {"a_0": np.array([1, 0], np.float32), "a_1": np.array([0, 1], np.float32)}
    assert result.act(obs) == {"a_0": 0, "a_1": 1}


def test_diffusion_leaves_every_agent_with_the_same_parameters():
    flat = train(Bandit(), "diffusion-v1", {"n_steps": 5, "discount_horizon": HORIZON}, steps=50, seed=0).core.flat()
    torch.testing.assert_close(flat, flat[:1].expand_as(flat), rtol=0, atol=0)


def test_random_policy_earns_half_the_bandits_best_return():
    returns = random_returns(Bandit(), 400, seed=0)
    assert len(returns) == 400 and abs(np.mean(returns) - LENGTH / 2) < 0.2  # standard error about 0.06


def test_the_learners_train_on_the_fleets_own_environment():
    env = parallel_env(
        "thermostats-small-v1",
        fleet__sites__0__devices=3,
        fleet__sites__1__devices=3,
        topology__degree=2,
        horizon="30min",
        outputs__sample_devices=2,
    )
    result = train(env, "independent-v1", steps=90, seed=0, points=3)
    assert [row["episodes"] for row in result.curve] == [6, 6, 6] and all(
        row["mean_return"] < 0 for row in result.curve
    )


def test_train_refuses_what_it_cannot_run_naming_it():
    with pytest.raises(ConfigError, match="observation space to be a Box"):
        train(Bandit(box=False), steps=1)
    with pytest.raises(ConfigError, match="rule-based-v1"):
        train(Bandit(), "rule-based-v1", steps=1)
    with pytest.raises(ConfigError, match="weights: 'max-degree'"):
        train(Bandit(), "diffusion-v1", steps=1, weights="max-degree")
    with pytest.raises(ConfigError, match="graph: nodes must be the agents' indices 0..1"):
        train(Bandit(), "diffusion-v1", steps=1, graph=nx.path_graph(3))
    with pytest.raises(ConfigError, match="graph: only diffusion-v1"):
        train(Bandit(), "independent-v1", steps=1, graph=nx.path_graph(2))
    with pytest.raises(ConfigError, match="params.shaping_per_degc"):
        train(Bandit(), params={"shaping_per_degc": 0.5}, steps=1)


@pytest.mark.parametrize(
    ("graph", "weights", "by_hand"),
    [
        (nx.cycle_graph(4), "uniform", [[1, 1, 0, 1], [1, 1, 1, 0], [0, 1, 1, 1], [1, 0, 1, 1]]),  # thirds
        (nx.path_graph(4), "uniform", [[3, 3, 0, 0], [2, 2, 2, 0], [0, 2, 2, 2], [0, 0, 3, 3]]),  # halves at the ends
        (nx.path_graph(4), "metropolis", [[4, 2, 0, 0], [2, 2, 2, 0], [0, 2, 2, 2], [0, 0, 2, 4]]),  # 1/(1+max d)
    ],
)
def test_diffusion_adapts_then_combines_the_adapted_parameters_of_the_same_round(graph, weights, by_hand):
    """One round (n_steps steps, one update): the agents act alike in both runs (same start, same
    draws), so independent learners end with the adapted parameters, and diffusion with their
    mix by the combination matrix worked out by hand (in sixths or thirds)."""
    c = torch.tensor(by_hand, dtype=torch.float32)
    c /= c.sum(1, keepdim=True)
    torch.testing.assert_close(mixing_matrix(graph, weights, 4), c)
    params = {"n_steps": 3}
    adapted = train(Bandit(n=4), "independent-v1", params, steps=3, seed=2).core.flat()
    assert not torch.allclose(adapted[0], adapted[1])  # the agents saw different cues
    mixed = train(Bandit(n=4), "diffusion-v1", params, steps=3, seed=2, graph=graph, weights=weights).core.flat()
    torch.testing.assert_close(mixed, c @ adapted)


def test_centralized_trains_one_network_that_every_agent_acts_with():
    result = train(Bandit(n=3), "centralized-v1", {"n_steps": 5}, steps=50, seed=0)
    assert result.core.flat().shape[0] == 1
    obs = {f"a_{i}": np.array([1, 0], np.float32) for i in range(3)}
    assert len(set(result.act(obs).values())) == 1


class Relay(ParallelEnv):
    """Agent i runs episodes of i + 2 steps, restarting them on its own (``EPISODE_END``); reward 1
    per step; the PettingZoo episode lasts STEPS steps for all agents."""

    metadata = {"name": "relay_v0"}
    STEPS = 12

    def __init__(self) -> None:
        self.possible_agents = ["r_0", "r_1"]
        self.observation_spaces = {a: spaces.Box(0.0, 10.0, (1,), np.float32) for a in self.possible_agents}
        self.action_spaces = {a: spaces.Discrete(2) for a in self.possible_agents}

    def observation_space(self, agent):
        return self.observation_spaces[agent]

    def action_space(self, agent):
        return self.action_spaces[agent]

    def reset(self, seed=None, options=None):
        self.agents, self.t, self.age = list(self.possible_agents), 0, [0, 0]
        return self._observe(), {a: {EPISODE_END: None} for a in self.agents}

    def _observe(self):
        return {a: np.array([age], np.float32) for a, age in zip(self.possible_agents, self.age)}

    def step(self, actions):
        self.t += 1
        ends = {}
        for i, a in enumerate(self.possible_agents):
            self.age[i] += 1
            ends[a] = "terminated" if self.age[i] == i + 2 else None
            self.age[i] %= i + 2
        over = self.t == self.STEPS
        flags = dict.fromkeys(self.agents, False), dict.fromkeys(self.agents, over)
        out = (
            self._observe(),
            dict.fromkeys(self.agents, 1.0),
            *flags,
            {a: {EPISODE_END: ends[a]} for a in self.agents},
        )
        if over:
            self.agents = []
        return out


def test_an_agent_that_restarts_its_episode_on_its_own_is_not_bootstrapped_across_it(monkeypatch):
    seen = []
    update = ActorCritic.update
    monkeypatch.setattr(
        ActorCritic, "update", lambda core, r, gamma: seen.append(r.terminal.clone()) or update(core, r, gamma)
    )
    result = train(Relay(), "independent-v1", {"n_steps": 4}, steps=12, seed=0, points=1)
    terminal = torch.cat(seen)  # (12, 2): agent 0 ends every 2nd step, agent 1 every 3rd
    steps = torch.arange(1, 13)
    torch.testing.assert_close(terminal, torch.stack([steps % 2 == 0, steps % 3 == 0], 1))
    # 6 episodes of 2 steps and 4 of 3 steps; the run's end cuts none (12 is a multiple of both)
    assert result.curve == [{"step": 12, "episodes": 10, "mean_return": (6 * 2 + 4 * 3) / 10}]


def test_random_returns_count_each_agents_episodes_of_an_env_that_restarts_them():
    assert sorted(random_returns(Relay(), 10, seed=0)) == [2.0] * 6 + [3.0] * 4


def test_diff_dacs_defaults_run_with_rmsprop():
    result = train(Bandit(), "diffusion-v1", DIFF_DAC, steps=10, seed=0)
    assert isinstance(result.core.optimizer, RMSprop) and result.core.optimizer.param_groups[0]["lr"] == 7e-4
