"""The rule-based baseline: a deadband (bang-bang) thermostat for N devices at once."""

from __future__ import annotations

import numpy as np

from devices.building import check_shape
from devices.config import RuleBasedConfig


class RuleBasedThermostat:
    """Full power below the comfort band, off once the deadband is crossed, hysteresis between.

    Heat mode: switch on (top level) when ``temp < lo``, off when ``temp >= lo + deadband``,
    otherwise keep the previous state. Cool mode mirrors this around ``hi``: on when
    ``temp > hi``, off when ``temp <= hi - deadband``. The state ``on`` (N,) bool says which
    devices run; every device starts off.
    """

    def __init__(self, cfg: RuleBasedConfig, mode: str, n_levels: int, n: int) -> None:
        if mode not in ("heat", "cool"):
            raise ValueError(f"mode must be 'heat' or 'cool', got {mode!r}")
        if n_levels < 2:
            raise ValueError(f"n_levels must be at least 2 (off and on), got {n_levels}")
        self.deadband = cfg.deadband_c
        self.mode = mode
        self.top_level = n_levels - 1
        self.on = np.zeros(n, dtype=bool)

    def act(self, temp_meas: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Levels for measured temperatures and comfort bands, each (N,) degC; returns (N,) int64."""
        for name, array in (("temp_meas", temp_meas), ("lo", lo), ("hi", hi)):
            check_shape(name, np.asarray(array), self.on.shape)
        if self.mode == "heat":
            switch_on, switch_off = temp_meas < lo, temp_meas >= lo + self.deadband
        else:
            switch_on, switch_off = temp_meas > hi, temp_meas <= hi - self.deadband
        self.on = np.where(switch_on, True, np.where(switch_off, False, self.on))
        return np.where(self.on, self.top_level, 0).astype(np.int64)

    def reset(self, mask: np.ndarray) -> None:
        """Switch off the devices where ``mask`` (N,) bool is set, e.g. after a reboot."""
        mask = np.asarray(mask, dtype=bool)
        check_shape("mask", mask, self.on.shape)
        self.on = self.on & ~mask
