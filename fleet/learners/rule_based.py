"""The rule-based thermostat (deadband on/off) as a fleet controller: the non-learning baseline."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from devices.config import RuleBasedConfig
from devices.thermostat import RuleBasedThermostat
from fleet.learners.base import LearnerContext, Observation


class RuleBasedLearner:
    """Deadband bang-bang control on each device's measured temperature; learns nothing."""

    name: ClassVar[str] = "rule-based-v1"
    communicates: ClassVar[bool] = False

    def __init__(self, config: RuleBasedConfig, ctx: LearnerContext) -> None:
        self.thermostat = RuleBasedThermostat(config, ctx.mode, ctx.n_levels, ctx.n_devices)

    def act(self, obs: Observation) -> np.ndarray:
        return self.thermostat.act(obs.temp_c, obs.band_lo, obs.band_hi)

    def observe(self, reward: np.ndarray) -> None:
        """Nothing to learn from."""

    def update(self) -> dict[str, float]:
        return {}
