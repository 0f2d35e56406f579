"""Noisy measurements of the device state, vectorized over N devices."""

from __future__ import annotations

import numpy as np


def sense_temperature(temp: np.ndarray, noise_std: float, rng: np.random.Generator) -> np.ndarray:
    """Indoor temperature readings, (N,) degC: ``temp`` (N,) plus Gaussian noise of std ``noise_std``.

    With ``noise_std == 0`` this returns a copy of ``temp`` and draws nothing from ``rng``.
    """
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    if noise_std == 0:
        return np.array(temp, dtype=float)
    return temp + rng.normal(0.0, noise_std, size=np.shape(temp))
