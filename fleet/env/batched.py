"""A scenario's fleet as one batched environment: tensors with a leading device axis.

:class:`BatchedFleetEnv` drives a real :class:`~fleet.sim.engine.Simulation` of the scenario,
whose controller (:class:`ExternalController`) applies the actions the environment is given.
The simulation's other processes (learning, telemetry, consensus, metrics) run as SimPy
processes exactly as in ``fleet run``; only the control tick is driven from outside, in two
halves around each call:

- ``reset`` builds the simulation, starts its processes without the control tick
  (:meth:`Simulation.start`) and runs the first half of the tick at time 0,
  :meth:`Simulation.sense` (churn, link cuts, sensing), to return the first observation;
- ``step(actions)`` runs the second half, :meth:`Simulation.act` (the actions, the physics, the
  rewards; the rule-based baseline beside it when the scenario has one), runs the SimPy
  environment up to the next control time (every process due in between, those at the same
  time after the control tick, as their phases order them), then senses there.

The control tick is the first process at its time and ``env.run(until=t)`` stops before
anything due at ``t``, so a step is one control tick of ``fleet run``, with the same random
draws: the same seed and the same actions give the same run (a test holds the environment to
the rule-based run of the same scenario).

Devices that are offline (churn) still act: a thermostat controls its house locally while
its link is down; ``infos["online"]`` says which devices are connected. The episode ends by
truncation at the scenario's horizon; nothing terminates it earlier.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from fleet.errors import ConfigError
from fleet.learners.base import Observation
from fleet.learners.features import N_FEATURES, feature_bounds, features
from fleet.scenario import Scenario, apply_overrides, load_scenario, parse_scenario
from fleet.sim.engine import Simulation

NET_COUNTERS = ("bytes_sent", "bytes_received", "messages_sent", "messages_delivered", "messages_dropped", "radio_s")
"""Per-device network counters of the infos (cumulative over the episode), from the simulated network's stats."""


def resolve(scenario: str | Path | Scenario, overrides: dict[str, Any]) -> Scenario:
    """``scenario`` (a shipped scenario's name, a file, or a Scenario) with ``overrides``: keys are
    ``--set`` paths with ``__`` for the dots (``horizon="6h"``, ``fleet__sites__0__devices=3``,
    ``network__churn__failures_per_day=0``), values Python values. ConfigError naming the field
    if the result is not a valid scenario."""
    items = []
    for key, value in overrides.items():
        try:
            items.append(f"{key.replace('__', '.')}={json.dumps(value, allow_nan=False)}")
        except (TypeError, ValueError):
            raise ConfigError(f"override {key}={value!r}: give a number, string, bool, list or dict") from None
    if not isinstance(scenario, Scenario):
        return load_scenario(scenario, items)
    if not items:
        return scenario
    return parse_scenario(
        apply_overrides(scenario.model_dump(mode="json"), items), f"scenario {scenario.name}", Path.cwd()
    )


class ExternalController:
    """A fleet controller that applies the levels it was handed: an environment's agents decide."""

    name: ClassVar[str] = "external"
    communicates: ClassVar[bool] = False
    exchange: ClassVar[str] = "none"
    update_every: ClassVar[int] = 0
    metric_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, n: int) -> None:
        self.levels = np.zeros(n, np.int64)
        """(N,) the actions of the next tick."""
        self.reward = np.zeros(n)
        """(N,) the reward of the last tick."""

    def act(self, obs: Observation) -> np.ndarray:
        return self.levels

    def observe(self, reward: np.ndarray) -> None:
        self.reward = reward

    def update(self, t: float) -> dict[str, float]:
        return {}


class BatchedFleetEnv:
    """The N devices of ``scenario`` as agents of one environment.

    Observations are the features the project's learners see (:func:`fleet.learners.features.features`,
    columns :data:`~fleet.learners.features.COLUMNS`), (N devices, F features) float32, clipped
    to ``low`` and ``high`` (F,); actions are HVAC levels, (N,) integers in [0, n_actions);
    rewards (N,) float32 are the scenario's per-device rewards (``reward`` weights).
    """

    def __init__(self, scenario: Scenario, device: str = "cpu") -> None:
        self.scenario = scenario
        self.device = device
        self.agents: list[str] = scenario.fleet.device_names
        """Device names, in fleet order (row i of every tensor is device ``agents[i]``)."""
        self.n_devices = scenario.n_devices
        self.n_actions = len(scenario.fleet.hvac.power_levels_kw)
        self.n_features = N_FEATURES
        self.low, self.high = feature_bounds()
        self.sim: Simulation | None = None
        self.observation: Observation | None = None
        """What the devices sense now, in physical units (the observation before the features)."""
        self.controller = ExternalController(self.n_devices)
        self._sensed: tuple[dict, np.ndarray] | None = None
        self._episode_seeds: np.random.Generator | None = None
        """Draws the seed of each episode reset without one, from the last seed given."""

    # --- the episode ---------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> tuple[torch.Tensor, dict]:
        """Start an episode: the scenario with seed ``seed`` (None: the scenario's own seed at
        the first reset, then seeds drawn from the last one given). Returns (obs (N, F), infos)."""
        if seed is not None or self._episode_seeds is None:
            seed = self.scenario.seed if seed is None else seed
            self._episode_seeds = np.random.default_rng(seed)
        else:
            seed = int(self._episode_seeds.integers(2**63))
        self.controller = ExternalController(self.n_devices)
        self.sim = Simulation(self.scenario.model_copy(update={"seed": seed}), self.device, self.controller)
        self.sim.start(control=False)
        self._sensed = self.sim.sense(self.sim.env.now)
        return self._observation(), self._infos()

    def step(self, actions: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, ...]:
        """One control tick with ``actions`` (N,). Returns obs (N, F), rewards (N,), terminated
        (N,) bool (never), truncated (N,) bool (all, at the horizon), infos (a dict)."""
        if self._sensed is None:
            raise RuntimeError("call reset() before step(), and again after the episode was truncated")
        self.controller.levels = self._levels(actions)
        sim = self.sim
        sim.act(*self._sensed)
        reward = torch.as_tensor(self.controller.reward, dtype=torch.float32, device=self.device)
        nxt = sim.env.now + self.scenario.control_period
        done = nxt >= self.scenario.horizon
        sim.env.run(until=min(nxt, self.scenario.horizon))
        self._sensed = sim.sense(sim.env.now)
        obs, infos = self._observation(), self._infos()
        if done:
            self._sensed = None
        never = torch.zeros(self.n_devices, dtype=torch.bool, device=self.device)
        return obs, reward, never, torch.full_like(never, done), infos

    # --- what the agents get --------------------------------------------------------------

    def _levels(self, actions: torch.Tensor | np.ndarray) -> np.ndarray:
        """``actions`` as (N,) int64, or ValueError saying what was expected."""
        a = actions.detach().cpu().numpy() if isinstance(actions, torch.Tensor) else np.asarray(actions)
        if a.shape != (self.n_devices,):
            raise ValueError(
                f"actions must have shape (N devices,) = ({self.n_devices},), one HVAC level per device; got {a.shape}"
            )
        if a.dtype.kind not in "iu" or (len(a) and not 0 <= a.min() <= a.max() < self.n_actions):
            raise ValueError(
                f"actions must be integer HVAC levels in [0, {self.n_actions}); "
                f"got {a.dtype} from {a.min()} to {a.max()}"
            )
        return a.astype(np.int64)

    def _observation(self) -> torch.Tensor:
        self.observation = obs = self.sim.fleet.sense(*self._sensed)
        x = features(obs, "cpu").numpy()
        np.clip(x, self.low, self.high, out=x)
        return torch.from_numpy(x).to(self.device)

    def _infos(self) -> dict:
        """Per-device arrays (N,): ``online``, true ``temp_c``, ``power_kw`` of the last tick,
        ``band_lo``/``band_hi`` now, ``net/<counter>`` (:data:`NET_COUNTERS`); fleet totals:
        ``time_s`` and ``kpi/<name>`` (and ``baseline/<name>`` with a baseline) as in metrics.csv."""
        sim, n = self.sim, self.n_devices
        inputs = self._sensed[0]
        stats = sim.network.stats
        infos = {
            "online": inputs["online"],
            "temp_c": sim.fleet.buildings.temp.copy(),
            "power_kw": sim.fleet.power.copy(),
            "band_lo": inputs["band_lo"],
            "band_hi": inputs["band_hi"],
            **{f"net/{k}": getattr(stats, k)[:n].copy() for k in NET_COUNTERS},
            "time_s": float(sim.env.now),
            **{f"kpi/{k}": v for k, v in sim.fleet.kpis.as_dict().items()},
        }
        if sim.baseline is not None:
            infos.update({f"baseline/{k}": v for k, v in sim.baseline.kpis.as_dict().items()})
        return infos
