"""One thermostat as a Gymnasium environment (``fleet/Thermostat-v1``), for single-agent libraries.

A :class:`~fleet.env.batched.BatchedFleetEnv` of a one-house fleet: by default the shipped
``thermostats-small-v1`` (heat pump, winter, time-of-use tariff, 2 days of 1-minute ticks)
with its two sites of 50 replaced by one house on Wi-Fi (:data:`ONE_HOUSE`), telemetry to the
cloud as in the fleet, no consensus (no neighbours). Observations are the learners' features
(F,) float32, actions the HVAC level, the reward the house's per-tick reward; an episode is
truncated at the horizon. ``info`` holds the house's state, its network counters and the
KPIs (with the rule-based thermostat's beside them, ``baseline/...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from fleet.env.batched import BatchedFleetEnv, resolve
from fleet.errors import ConfigError
from fleet.scenario import Scenario

ONE_HOUSE = {
    "fleet__sites": [{"name": "home", "devices": 1, "feeder_kw": 120.0, "network": {"wifi": 1.0}}],
    "topology__kind": "complete",
    "workloads__consensus__enabled": False,
    "outputs__sample_devices": 1,
}
"""Overrides that make a fleet scenario one house (applied before the caller's own)."""


class ThermostatEnv(gymnasium.Env):
    """One house of ``scenario`` (made one house by :data:`ONE_HOUSE`), as a Gymnasium env."""

    metadata = {"render_modes": []}

    def __init__(
        self, scenario: str | Path | Scenario = "thermostats-small-v1", device: str = "cpu", **overrides: Any
    ) -> None:
        resolved = resolve(scenario, {**ONE_HOUSE, **overrides})
        if resolved.n_devices != 1:
            raise ConfigError(
                f"fleet/Thermostat-v1 is one house; the overrides give {resolved.n_devices} devices (fleet.sites)"
            )
        self.batched = BatchedFleetEnv(resolved, device)
        self.observation_space = spaces.Box(self.batched.low, self.batched.high, dtype=np.float32)
        self.action_space = spaces.Discrete(self.batched.n_actions)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        obs, infos = self.batched.reset(seed)
        return obs[0].cpu().numpy(), _first(infos)

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, infos = self.batched.step(np.array([action]))
        return obs[0].cpu().numpy(), float(reward[0]), bool(terminated[0]), bool(truncated[0]), _first(infos)


def _first(infos: dict) -> dict:
    """The batched infos of a one-device fleet as plain Python values."""
    return {k: v[0].item() if isinstance(v, np.ndarray) else v for k, v in infos.items()}
