"""Observation -> feature matrix for neural learners."""

from __future__ import annotations

import numpy as np
import torch

from fleet.learners.base import Observation

N_FEATURES = 10


def features(obs: Observation, device: str) -> torch.Tensor:
    """(N, 10) float32: indoor, outdoor, band low/high (centred, scaled), distance below and
    above the band, time of day (sin, cos), price, feeder load fraction."""
    hour = 2 * np.pi * obs.hour / 24.0
    n = len(obs.temp_c)
    cols = [
        (obs.temp_c - 20.0) / 5.0,
        (obs.outdoor_c - 5.0) / 10.0,
        (obs.band_lo - 20.0) / 5.0,
        (obs.band_hi - 20.0) / 5.0,
        np.maximum(obs.band_lo - obs.temp_c, 0.0),
        np.maximum(obs.temp_c - obs.band_hi, 0.0),
        np.full(n, np.sin(hour)),
        np.full(n, np.cos(hour)),
        obs.price / 0.3,
        obs.feeder_load,
    ]
    return torch.as_tensor(np.stack(cols, axis=1), dtype=torch.float32, device=device)
