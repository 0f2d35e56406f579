"""The project's actor-critic learners on any PettingZoo ParallelEnv with Box observations and
Discrete actions.

The agents' observations are stacked into an (N agents, obs_dim) tensor and handed to the
generic batched core (:class:`fleet.learners.stacked.ActorCritic`): every agent owns its actor
and critic, stacked on the leading axis, as every device does in the simulator. Two learners:

- ``independent-v1``: each agent learns alone from its own rewards;
- ``diffusion-v1``: after every update each agent's parameters become the average of all the
  agents' (Diff-DAC's combine with uniform weights on the complete graph: here there is no
  network, so every message arrives).

A rollout ends after ``n_steps`` steps or at the end of an episode; an episode that was
truncated (a time limit) is bootstrapped from its last observation, one that terminated is
not. Every agent must act at every step until the episode ends for all of them together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from fleet.errors import ConfigError
from fleet.learners.stacked import ActorCritic, ActorCriticConfig, Rollout

LEARNERS = ("independent-v1", "diffusion-v1")
"""The learners :func:`train` runs."""
THERMOSTAT_ONLY = ("shaping_per_degc", "shaping_kwh_per_degc", "init_policy", "frozen", "learn_until", "evaluate")
"""Fields of ActorCriticConfig that only the simulator's thermostat learners use."""


@dataclass
class Training:
    """What :func:`train` returns."""

    curve: list[dict]
    """Rows ``{"step", "episodes", "mean_return"}``: the mean over the episodes that ended since
    the previous row of the episode's return (the sum over its steps of the agents' mean
    reward); NaN where none ended."""
    core: ActorCritic
    """The trained agents' stacked actors and critics, row i for ``agents[i]``."""
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
    step_s: float = 1.0,
) -> Training:
    """Train ``learner`` (with ``params``, fields of ActorCriticConfig) on ``env`` for ``steps``
    environment steps from ``env.reset(seed=seed)``, with ``points`` rows of learning curve.
    ``step_s``: seconds of one environment step, in which ``params``' ``discount_horizon`` is
    read (the discount per step is ``exp(-step_s / discount_horizon)``)."""
    cfg = _config(learner, params)
    gamma = cfg.discount(step_s)
    agents, obs_dim, n_actions = _spaces(env)
    gen = torch.Generator().manual_seed(seed)
    core = ActorCritic(cfg, len(agents), obs_dim, n_actions, gen, "cpu")
    every = max(1, steps // points)
    curve, returns, episode_return = [], [], 0.0
    x = stack(env.reset(seed=seed)[0], agents)
    obs, actions, rewards = [x], [], []
    for step in range(1, steps + 1):
        a = core.act(x, gen)
        out, reward, terminated, truncated, _ = env.step({agent: int(a[i]) for i, agent in enumerate(agents)})
        x = stack(out, agents)
        obs.append(x), actions.append(a), rewards.append(torch.tensor([float(reward[g]) for g in agents]))
        episode_return += float(rewards[-1].mean())
        ended = _ended(env, agents, terminated, truncated)
        if len(rewards) == cfg.n_steps or ended:
            terminal = torch.zeros(len(rewards), len(agents), dtype=torch.bool)
            terminal[-1] = torch.tensor([bool(terminated[g]) for g in agents]) if ended else False
            core.update(Rollout(torch.stack(obs), torch.stack(actions), torch.stack(rewards), terminal), gamma)
            if learner == "diffusion-v1":
                core.load_flat(core.flat().mean(0, keepdim=True).expand(len(agents), -1).contiguous())
            obs, actions, rewards = [x], [], []
        if ended:
            returns.append(episode_return)
            episode_return = 0.0
            x = stack(env.reset()[0], agents)
            obs = [x]
        if step % every == 0 and len(curve) < points:
            mean = float(np.mean(returns)) if returns else math.nan
            curve.append({"step": step, "episodes": len(returns), "mean_return": mean})
            returns = []
    return Training(curve, core, agents)


def random_returns(env, episodes: int, seed: int) -> list[float]:
    """Returns (as :func:`train` counts them) of ``episodes`` episodes of uniformly random actions."""
    agents, _, _ = _spaces(env)
    env.reset(seed=seed)
    for i, agent in enumerate(agents):
        env.action_space(agent).seed(seed + i)
    out = []
    for _ in range(episodes):
        total = 0.0
        while env.agents:
            _, reward, *_ = env.step({g: env.action_space(g).sample() for g in agents})
            total += float(np.mean([reward[g] for g in agents]))
        out.append(total)
        env.reset()
    return out


def stack(obs: dict, agents: list[str]) -> torch.Tensor:
    """The agents' observations as one (N agents, obs_dim) float32 tensor."""
    return torch.as_tensor(np.stack([obs[a] for a in agents]), dtype=torch.float32)


def _config(learner: str, params: dict[str, Any] | None) -> ActorCriticConfig:
    if learner not in LEARNERS:
        raise ConfigError(f"learner {learner!r}: train() runs {' and '.join(LEARNERS)}")
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
