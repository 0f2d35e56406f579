"""The project's actor-critic learners on any PettingZoo ParallelEnv with Box observations and
Discrete actions.

The agents' observations are stacked into an (N agents, obs_dim) tensor and handed to the
generic batched core (:class:`fleet.learners.stacked.ActorCritic`). Three learners:

- ``independent-v1``: each agent owns its actor and critic (stacked on the leading axis, as
  every device does in the simulator) and learns alone from its own rewards;
- ``diffusion-v1``: Diff-DAC. Each agent adapts (its own update), then combines: its
  parameters become ``theta_i <- sum_j C_ij theta_j`` over its closed neighbourhood in
  ``graph``, of the parameters its neighbours adapted *in the same round*. Here there is no
  network, so every message arrives: ``C`` (N, N) holds uniform weights over the closed
  neighbourhood (the reference's, IanRDavies/Diff-DAC) or Metropolis weights
  (:func:`fleet.sim.topology.consensus_weights`); the complete graph by default;
- ``centralized-v1``: one actor and critic (N = 1) that every agent acts with, trained on all
  the agents' rollouts at once (the loss averaged over them).

A rollout ends after ``n_steps`` steps or at the end of an episode. An episode that was truncated
(a time limit) is bootstrapped from its last observation, one that terminated is not. Every
agent acts at every step until the episode ends for all of them together, except that an env
may restart one agent's episode on its own (as vectorized gymnasium envs and Diff-DAC's
reference do): it says so in ``infos[agent][EPISODE_END]`` (:mod:`fleet.env.acrobot`), the
observation it returns is the next episode's first, and the learner bootstraps nothing across
the restart (a truncated one included, as the reference does: its last observation is gone).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
import torch
from gymnasium import spaces

from fleet.env.acrobot import EPISODE_END
from fleet.errors import ConfigError
from fleet.learners.stacked import ActorCritic, ActorCriticConfig, Rollout
from fleet.sim.topology import Topology, consensus_weights, weight_matrix

LEARNERS = ("independent-v1", "diffusion-v1", "centralized-v1")
"""The learners :func:`train` runs."""
THERMOSTAT_ONLY = ("shaping_per_degc", "shaping_kwh_per_degc", "init_policy", "frozen", "learn_until", "evaluate")
"""Fields of ActorCriticConfig that only the simulator's thermostat learners use."""
WEIGHTS = ("uniform", "metropolis")
"""Combination weights of ``diffusion-v1``."""
DIFF_DAC = {
    "optimizer": "rmsprop",
    "lr": 7e-4,
    "n_steps": 5,
    "discount_horizon": -1.0 / math.log(0.99),  # gamma 0.99 per step of train()'s default step_s = 1 s
    "gae_lambda": 1.0,
    "normalize_advantages": False,
    "hidden": 64,
    "max_grad_norm": math.inf,
}
"""``params`` of Diff-DAC's reference defaults (IanRDavies/Diff-DAC, ``diffdac/arguments.py``):
RMSprop at 7e-4 (alpha 0.99, eps 1e-5), 5-step returns (no GAE), gamma 0.99 per step, advantages not
normalized, no gradient clipping, two hidden tanh layers of 64 in the actor and in the critic;
entropy 0.01 and value 0.5 are ActorCriticConfig's defaults too. Unlike the reference, the
critic learns returns normalized by their running statistics (the core's ValueNorm) and the
observations are not normalized."""


@dataclass
class Training:
    """What :func:`train` returns."""

    curve: list[dict]
    """Rows ``{"step", "episodes", "mean_return"}``: the episodes that ended since the previous
    row (each agent's counted, N per episode that ends for all agents together) and the mean of
    their returns (an agent's return: the sum of its rewards over its episode); NaN where none ended."""
    core: ActorCritic
    """The trained agents' stacked actors and critics, row i for ``agents[i]`` (one row, shared
    by every agent, for ``centralized-v1``)."""
    agents: list[str]

    def act(self, obs: dict, gen: torch.Generator | None = None) -> dict:
        """Each agent's action for ``obs``: sampled from its policy with ``gen``, or its most probable without."""
        a = self.core.act(stack(obs, self.agents), gen, greedy=gen is None)
        return {agent: int(a[i]) for i, agent in enumerate(self.agents)}


def train(
    env,
    learner: str = "independent-v1",
    params: dict[str, Any] | None = None,
    steps: int = 10_000,
    seed: int = 0,
    points: int = 20,
    graph: nx.Graph | None = None,
    weights: str = "uniform",
    step_s: float = 1.0,
) -> Training:
    """Train ``learner`` (with ``params``, fields of
    :class:`~fleet.learners.configs.ActorCriticConfig`) on ``env`` for ``steps`` environment steps
    from ``env.reset(seed=seed)``, with ``points`` rows of learning curve.
    ``diffusion-v1`` combines over ``graph`` (nodes 0..N-1, agent i in ``env.possible_agents``
    order; None: the complete graph) with ``weights`` (:data:`WEIGHTS`). ``step_s``: seconds of one
    environment step, in which ``params``' ``discount_horizon`` is read (the discount per step is
    ``exp(-step_s / discount_horizon)``)."""
    cfg = _config(learner, params)
    gamma = cfg.discount(step_s)
    agents, obs_dim, n_actions = _spaces(env)
    mix = mixing_matrix(graph, weights, len(agents)) if learner == "diffusion-v1" else None
    if mix is None and graph is not None:
        raise ConfigError(f"graph: only diffusion-v1 combines over a graph, not {learner}")
    gen = torch.Generator().manual_seed(seed)
    shared = learner == "centralized-v1"
    core = ActorCritic(cfg, 1 if shared else len(agents), obs_dim, n_actions, gen, "cpu", shared=shared)
    every = max(1, steps // points)
    curve, tally = [], _Returns(len(agents))
    x = stack(env.reset(seed=seed)[0], agents)
    obs, actions, rewards, terminal = [x], [], [], []
    for step in range(1, steps + 1):
        a = core.act(x, gen)
        x, reward, done, ended = _step(env, agents, {agent: int(a[i]) for i, agent in enumerate(agents)}, tally)
        obs.append(x), actions.append(a), rewards.append(reward), terminal.append(done)
        if len(rewards) == cfg.n_steps or ended:
            rollout = Rollout(torch.stack(obs), torch.stack(actions), torch.stack(rewards), torch.stack(terminal))
            core.update(rollout, gamma)
            if mix is not None:  # combine the parameters all agents adapted in this round
                core.load_flat(mix @ core.flat())
            obs, actions, rewards, terminal = [x], [], [], []
        if ended:
            x = stack(env.reset()[0], agents)
            obs = [x]
        if step % every == 0 and len(curve) < points:
            mean = float(np.mean(tally.ended)) if tally.ended else math.nan
            curve.append({"step": step, "episodes": len(tally.ended), "mean_return": mean})
            tally.ended = []
    return Training(curve, core, agents)


def mixing_matrix(graph: nx.Graph | None, weights: str, n: int) -> torch.Tensor:
    """Diffusion's combination matrix (N, N) float32 over ``graph`` (None: complete): row i holds
    agent i's weights over its closed neighbourhood, ``uniform`` (1 / (1 + d_i)) or ``metropolis``."""
    if weights not in WEIGHTS:
        raise ConfigError(f"weights: {weights!r}; diffusion-v1 combines with {' or '.join(WEIGHTS)} weights")
    graph = nx.complete_graph(n) if graph is None else graph
    if sorted(graph.nodes) != list(range(n)) or nx.number_of_selfloops(graph):
        raise ConfigError(f"graph: nodes must be the agents' indices 0..{n - 1}, without self-loops")
    edges = np.array(list(graph.edges), dtype=np.int64).reshape(-1, 2)
    topo = Topology(n, np.concatenate([edges[:, 0], edges[:, 1]]), np.concatenate([edges[:, 1], edges[:, 0]]))
    return torch.as_tensor(weight_matrix(topo, consensus_weights(topo, weights)), dtype=torch.float32)


def random_returns(env, episodes: int, seed: int) -> list[float]:
    """Returns (as :func:`train` counts them: each agent's) of the first ``episodes`` episodes that
    end under uniformly random actions."""
    agents, _, _ = _spaces(env)
    env.reset(seed=seed)
    for i, agent in enumerate(agents):
        env.action_space(agent).seed(seed + i)
    tally = _Returns(len(agents))
    while len(tally.ended) < episodes:
        if _step(env, agents, {g: env.action_space(g).sample() for g in agents}, tally)[-1]:
            env.reset()
    return tally.ended[:episodes]


def stack(obs: dict, agents: list[str]) -> torch.Tensor:
    """The agents' observations as one (N agents, obs_dim) float32 tensor."""
    return torch.as_tensor(np.stack([obs[a] for a in agents]), dtype=torch.float32)


class _Returns:
    """Each agent's return so far in its current episode, and the returns of the episodes that ended."""

    def __init__(self, n: int) -> None:
        self.running = np.zeros(n)
        self.ended: list[float] = []

    def add(self, rewards: np.ndarray, finished: np.ndarray) -> None:
        """Rewards (N,) of one step; ``finished`` (N,) bool: whose episode ended with it."""
        self.running += rewards
        self.ended += self.running[finished].tolist()
        self.running[finished] = 0.0


def _step(
    env, agents: list[str], actions: dict, tally: _Returns
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """One env step: the observations (N, obs_dim), rewards (N,), whether each agent's episode
    terminated or restarted on its own (N,) bool, and whether the episode ended for all agents."""
    out, reward, terminated, truncated, infos = env.step(actions)
    r = np.array([float(reward[g]) for g in agents])
    restarted = np.array([bool((infos.get(g) or {}).get(EPISODE_END)) for g in agents])
    ended = _ended(env, agents, terminated, truncated)
    done = restarted | (ended & np.array([bool(terminated[g]) for g in agents]))
    tally.add(r, restarted | ended)
    return stack(out, agents), torch.as_tensor(r, dtype=torch.float32), torch.as_tensor(done), ended


def _config(learner: str, params: dict[str, Any] | None) -> ActorCriticConfig:
    if learner not in LEARNERS:
        raise ConfigError(f"learner {learner!r}: train() runs {', '.join(LEARNERS)}")
    cfg = ActorCriticConfig.model_validate(params or {})
    thermostat = sorted(cfg.model_fields_set & set(THERMOSTAT_ONLY))
    if thermostat:
        raise ConfigError(
            f"params.{thermostat[0]}: only the simulator's thermostat learners use it; "
            f"train() takes the other ActorCriticConfig fields"
        )
    return cfg


def _spaces(env) -> tuple[list[str], int, int]:
    """(agents, obs_dim, n_actions), or ConfigError saying what train() needs."""
    agents = list(env.possible_agents)
    obs_space, act_space = env.observation_space(agents[0]), env.action_space(agents[0])
    for agent in agents:
        o, a = env.observation_space(agent), env.action_space(agent)
        if not (isinstance(o, spaces.Box) and len(o.shape) == 1 and o.shape == obs_space.shape):
            raise ConfigError(
                f"agent {agent}: train() needs every agent's observation space to be a Box of one shape "
                f"(obs_dim,); got {o}"
            )
        if not (isinstance(a, spaces.Discrete) and a.n == act_space.n):
            raise ConfigError(f"agent {agent}: train() needs every agent's action space to be one Discrete(n); got {a}")
    return agents, obs_space.shape[0], int(act_space.n)


def _ended(env, agents: list[str], terminated: dict, truncated: dict) -> bool:
    """Whether the episode ended (for all agents at once; ValueError if some agents left alone)."""
    done = [bool(terminated[g] or truncated[g]) for g in agents]
    if any(done) != all(done) or (not all(done) and list(env.agents) != agents):
        raise ValueError(
            "train() needs every agent to act at every step until the episode ends for all of them together"
        )
    return all(done)
