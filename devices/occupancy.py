"""Occupancy schedules and the comfort band they set, for N devices at once.

Every device follows the same daily schedule shifted by its own ``shift_h`` hours (positive:
everything happens later): device i is occupied at ``t_s`` when its local hour
``(t_s / 3600 - shift_h[i]) mod 24`` falls in one of the occupied intervals ``[start, end)``.
"""

from __future__ import annotations

import numpy as np

from devices.config import OccupancyConfig


class Occupancy:
    """Who is home, and the comfort band (low, high) in degC that follows from it."""

    def __init__(self, cfg: OccupancyConfig, shift_h: np.ndarray) -> None:
        shift_h = np.asarray(shift_h, dtype=float)
        if shift_h.ndim != 1:
            raise ValueError(f"shift_h must have shape (N,) (one shift per device), got {shift_h.shape}")
        self.shift_h = shift_h
        self.cfg = cfg
        intervals = np.asarray(sorted(cfg.occupied_hours), dtype=float).reshape(-1, 2)
        self._starts = intervals[:, 0]  # (K,) in order; the intervals do not overlap (OccupancyConfig checks)
        self._ends = intervals[:, 1]  # (K,)

    def occupied(self, t_s: float | np.ndarray) -> np.ndarray:
        """Whether each device is occupied at ``t_s``: (N,) bool for one time, (N, H) for (H,) times."""
        t = np.asarray(t_s, dtype=float)
        local_h = (t / 3600.0 - self.shift_h.reshape(-1, *[1] * t.ndim)) % 24.0  # (N,) or (N, H)
        if len(self._starts) == 0:
            return np.zeros(local_h.shape, dtype=bool)
        last = np.searchsorted(self._starts, local_h, side="right") - 1  # the interval starting last at or before
        return (last >= 0) & (local_h < self._ends[last])  # (last = -1 reads some end, then masked)

    def band(self, t_s: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Comfort bounds (low, high) of each device at ``t_s``, degC: each (N,) for one time,
        (N, H) for (H,) times."""
        return self.band_when(self.occupied(t_s))

    def band_when(self, occ: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Comfort bounds (low, high), degC, where ``occ`` (any shape, bool) says who is home."""
        (occ_lo, occ_hi), (free_lo, free_hi) = self.cfg.occupied_band_c, self.cfg.unoccupied_band_c
        return np.where(occ, occ_lo, free_lo), np.where(occ, occ_hi, free_hi)


def comfort_violation_c(temp: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Degrees outside the band ``[lo, hi]`` (0 inside), degC, (N,); arguments (N,)."""
    return np.maximum(lo - temp, 0.0) + np.maximum(temp - hi, 0.0)
