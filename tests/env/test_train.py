"""The project's learners on PettingZoo ParallelEnvs: a bandit whose best return is known, the
fleet's own environment, and what train() refuses."""

import numpy as np
import pytest
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv

from fleet.env import parallel_env
from fleet.env.train import random_returns, train
from fleet.errors import ConfigError

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
    """Two agents see (1, 0) or (0, 1) at random; reward 1 for the action equal to the index of
    the 1, else 0; episodes of LENGTH steps cut by a time limit. Best return LENGTH; random LENGTH / 2."""

    metadata = {"name": "bandit_v0"}

    def __init__(self, box=True) -> None:
        self.possible_agents = ["a_0", "a_1"]
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


@pytest.mark.parametrize("learner", ["independent-v1", "diffusion-v1"])
def test_both_learners_learn_the_bandits_best_response(learner):
    result = train(Bandit(), learner, {"n_steps": 5, "discount_horizon": HORIZON}, steps=3000, seed=0, points=6)
    assert [row["step"] for row in result.curve] == [500, 1000, 1500, 2000, 2500, 3000]
    assert all(row["episodes"] == 100 for row in result.curve)
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
    assert [row["episodes"] for row in result.curve] == [1, 1, 1] and all(
        row["mean_return"] < 0 for row in result.curve
    )


def test_train_refuses_what_it_cannot_run_naming_it():
    with pytest.raises(ConfigError, match="observation space to be a Box"):
        train(Bandit(box=False), steps=1)
    with pytest.raises(ConfigError, match="centralized-v1"):
        train(Bandit(), "centralized-v1", steps=1)
    with pytest.raises(ConfigError, match="params.shaping_per_degc"):
        train(Bandit(), params={"shaping_per_degc": 0.5}, steps=1)
