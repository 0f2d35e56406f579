"""A PettingZoo ParallelEnv of a scenario's fleet: one agent per device, a dict view of the batched env.

``parallel_env("thermostats-small-v1", horizon="1d")`` gives a
:class:`pettingzoo.ParallelEnv` whose agents are the device names (``d00000``, ...), with
Box observations (the learners' features, :data:`fleet.learners.features.COLUMNS`), Discrete
actions (HVAC power levels) and the scenario's per-device rewards. Every call goes to a
:class:`~fleet.env.batched.BatchedFleetEnv`: this class only turns its tensors into
per-agent dicts and back, so the simulation underneath is the same.

Agents never leave before the end: a device that goes offline (churn) keeps controlling its
house, as a thermostat does, and ``infos[agent]["online"]`` is False while it is disconnected.
All agents are truncated together at the horizon; ``agents`` is then empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from fleet.env.batched import NET_COUNTERS, BatchedFleetEnv, resolve
from fleet.scenario import Scenario

PER_DEVICE_INFOS = ("online", "temp_c", "power_kw", "band_lo", "band_hi", *(f"net/{k}" for k in NET_COUNTERS))
"""Keys of each agent's infos taken from its own row; ``fleet`` holds the fleet totals (one dict shared by all
agents)."""


class FleetParallelEnv(ParallelEnv):
    """The devices of a :class:`BatchedFleetEnv` as PettingZoo agents."""

    metadata = {"name": "fleet_thermostats_v1", "render_modes": []}

    def __init__(self, batched: BatchedFleetEnv) -> None:
        self.batched = batched
        self.possible_agents = list(batched.agents)
        self.agents: list[str] = []
        self.observation_spaces = {
            a: spaces.Box(batched.low, batched.high, dtype=np.float32) for a in self.possible_agents
        }
        self.action_spaces = {a: spaces.Discrete(batched.n_actions) for a in self.possible_agents}
        self.render_mode = None

    def observation_space(self, agent: str) -> spaces.Box:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Discrete:
        return self.action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        obs, infos = self.batched.reset(seed)
        self.agents = list(self.possible_agents)
        return self._per_agent(obs.cpu().numpy()), self._infos(infos)

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(
                f"step() needs an action for every agent; missing {len(missing)}: {', '.join(missing[:5])}"
            )
        obs, reward, terminated, truncated, infos = self.batched.step(np.array([actions[a] for a in self.agents]))
        out = (
            self._per_agent(obs.cpu().numpy()),
            self._per_agent(reward.cpu().numpy().tolist()),
            self._per_agent(terminated.cpu().numpy().tolist()),
            self._per_agent(truncated.cpu().numpy().tolist()),
            self._infos(infos),
        )
        if truncated.all() or terminated.all():
            self.agents = []
        return out

    def _per_agent(self, rows) -> dict:
        return dict(zip(self.possible_agents, rows))

    def _infos(self, infos: dict) -> dict[str, dict]:
        columns = [infos[k].tolist() for k in PER_DEVICE_INFOS]
        fleet = {k: v for k, v in infos.items() if k not in PER_DEVICE_INFOS}
        rows = zip(*columns)
        return {a: {**dict(zip(PER_DEVICE_INFOS, row)), "fleet": fleet} for a, row in zip(self.possible_agents, rows)}

    def close(self) -> None:
        """Nothing to release: the simulation lives in memory."""


def parallel_env(scenario: str | Path | Scenario, *, device: str = "cpu", **overrides: Any) -> FleetParallelEnv:
    """The fleet of ``scenario`` (a shipped name, a file, or a Scenario) as a PettingZoo
    ParallelEnv; ``overrides`` as ``--set`` with ``__`` for the dots, e.g.
    ``parallel_env("thermostats-small-v1", horizon="6h", network__churn__failures_per_day=4)``."""
    return FleetParallelEnv(BatchedFleetEnv(resolve(scenario, overrides), device))
