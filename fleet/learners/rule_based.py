"""The rule-based thermostat (deadband on/off) as a fleet controller: the non-learning baseline."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from devices.config import RuleBasedConfig
from devices.thermostat import RuleBasedThermostat
from fleet.learners.base import PREVIEW_H, LearnerContext, Observation
from fleet.statefile import attrs_state, load_attrs


class RuleBasedLearner:
    """Deadband bang-bang control on each device's measured temperature; learns nothing. With
    ``preheat_h``, the band it holds is the tighter of the band now and the band that many hours
    ahead, so the house is at the new setpoint when the schedule changes."""

    name: ClassVar[str] = "rule-based-v1"
    communicates: ClassVar[bool] = False
    exchange: ClassVar[str] = "none"
    update_every: ClassVar[int] = 0
    metric_keys: ClassVar[tuple[str, ...]] = ()
    """Learns nothing, so the engine schedules no updates."""
    supports_reset: ClassVar[bool] = True

    def __init__(self, config: RuleBasedConfig, ctx: LearnerContext) -> None:
        self.config = config
        self.thermostat = RuleBasedThermostat(config, ctx.mode, ctx.n_levels, ctx.n_devices)
        self.preheat_k = PREVIEW_H.index(config.preheat_h) if config.preheat_h else None
        """Column of the schedule preview whose band it holds as well, or None."""

    def act(self, obs: Observation) -> np.ndarray:
        lo, hi = obs.band_lo, obs.band_hi
        if (k := self.preheat_k) is not None:
            lo, hi = np.maximum(lo, obs.band_lo_ahead[:, k]), np.minimum(hi, obs.band_hi_ahead[:, k])
        return self.thermostat.act(obs.temp_c, lo, hi)

    def observe(self, reward: np.ndarray) -> None:
        """Nothing to learn from."""

    def update(self, t: float) -> dict[str, float]:
        return {}

    def reset(self, rows: np.ndarray, t: float) -> None:
        """Devices ``rows`` (R,) are new: their heat pumps start off, as every device's does."""
        self.thermostat.on[rows] = False

    def state_dict(self) -> dict:
        """``on`` (N,) bool: whether each heat pump runs (the deadband's memory)."""
        return attrs_state(self.thermostat, ("on",))

    def load_state_dict(self, state: dict) -> None:
        load_attrs(self.thermostat, state, ("on",))

    def export_policy(self, device_index: int) -> dict[str, torch.Tensor]:
        """The rule and its state for one device: deadband and whether the heat pump is on."""
        return {
            "deadband_c": torch.tensor(self.config.deadband_c),
            "on": torch.tensor(bool(self.thermostat.on[device_index])),
        }
