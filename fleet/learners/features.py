"""The thermostat adapter of the generic learner cores: Observation -> feature matrix, and the
reward shaping that reads the indoor temperature and the price back from the features.

The cores (:mod:`fleet.learners.stacked`) take plain (N, F) tensors and rewards as given; this
module is all they would need to know about thermostats, and neither they nor the learners
import it: a learner takes :data:`THERMOSTAT` (an :class:`~fleet.learners.adapters.Adapter`)
from its context, where it is the default.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from fleet.learners.base import N_FEATURES, PREVIEW_H, Observation
from fleet.learners.configs import ActorCriticConfig
from fleet.learners.stacked import Rollout

LAYOUT = "thermostat-features-v1"
"""Name of what :func:`features` computes. A saved policy names the layout it observed, and one
of another layout is refused: give any change of the features (which, their order, their
scaling) a new name."""
PRICE_SCALE = 0.3
"""Prices enter the features divided by this, per kWh."""
GAP_CAP_C = 4.0
"""Distances outside the comfort band are capped here: beyond a few degrees the right action
does not change, and unbounded inputs saturate the first tanh layer so that the network can
no longer tell 15 °C from 7 °C."""


def features(obs: Observation, device: str) -> torch.Tensor:
    """(N, N_FEATURES) float32: indoor, outdoor, band low/high (centred, scaled), distance below
    and above the band (capped at GAP_CAP_C), time of day (sin, cos), price, feeder load
    fraction; then band low, band high and price at each of PREVIEW_H hours ahead."""
    hour = 2 * np.pi * obs.hour / 24.0
    h = len(PREVIEW_H)
    x = np.empty((len(obs.temp_c), N_FEATURES), np.float32)  # each column computed in float64, rounded once
    x[:, 0] = (obs.temp_c - 20.0) / 5.0
    x[:, 1] = (obs.outdoor_c - 5.0) / 10.0
    x[:, 2] = (obs.band_lo - 20.0) / 5.0
    x[:, 3] = (obs.band_hi - 20.0) / 5.0
    x[:, 4] = np.clip(obs.band_lo - obs.temp_c, 0.0, GAP_CAP_C) / 2.0
    x[:, 5] = np.clip(obs.temp_c - obs.band_hi, 0.0, GAP_CAP_C) / 2.0
    x[:, 6] = np.sin(hour)
    x[:, 7] = np.cos(hour)
    x[:, 8] = obs.price / PRICE_SCALE
    x[:, 9] = obs.feeder_load
    x[:, 10 : 10 + h] = (obs.band_lo_ahead - 20.0) / 5.0
    x[:, 10 + h : 10 + 2 * h] = (obs.band_hi_ahead - 20.0) / 5.0
    x[:, 10 + 2 * h :] = obs.price_ahead / PRICE_SCALE
    return torch.from_numpy(x).to(device)


COLUMNS = (
    "indoor",
    "outdoor",
    "band_lo",
    "band_hi",
    "below_band",
    "above_band",
    "hour_sin",
    "hour_cos",
    "price",
    "feeder_load",
    *(f"band_lo_{h:g}h" for h in PREVIEW_H),
    *(f"band_hi_{h:g}h" for h in PREVIEW_H),
    *(f"price_{h:g}h" for h in PREVIEW_H),
)
"""Name of each feature column, in order."""
TEMP_RANGE_C = (-60.0, 60.0)
"""Temperatures (indoor, outdoor, comfort bands) that :func:`feature_bounds` allows."""
PRICE_CAP = 10.0
"""Highest price per kWh that :func:`feature_bounds` allows (tariffs are never negative)."""
FEEDER_LOAD_CAP = 10.0
"""Highest feeder load, as a multiple of the feeder's capacity, that :func:`feature_bounds` allows."""


def feature_bounds() -> tuple[np.ndarray, np.ndarray]:
    """(low, high), each (N_FEATURES,) float32: the range of every column of :func:`features`
    for temperatures in TEMP_RANGE_C, prices up to PRICE_CAP and feeder loads up to
    FEEDER_LOAD_CAP (the gaps, the time of day are bounded by construction). Environments clip
    their observations to it; no shipped scenario comes near its edges."""
    t_lo, t_hi = (np.asarray(TEMP_RANGE_C) - 20.0) / 5.0
    o_lo, o_hi = (np.asarray(TEMP_RANGE_C) - 5.0) / 10.0
    h = len(PREVIEW_H)
    price = (0.0, PRICE_CAP / PRICE_SCALE)
    bounds = (
        [
            (t_lo, t_hi),
            (o_lo, o_hi),
            (t_lo, t_hi),
            (t_lo, t_hi),
            (0.0, GAP_CAP_C / 2.0),
            (0.0, GAP_CAP_C / 2.0),
            (-1.0, 1.0),
            (-1.0, 1.0),
            price,
            (0.0, FEEDER_LOAD_CAP),
        ]
        + [(t_lo, t_hi)] * 2 * h
        + [price] * h
    )
    low, high = np.array(bounds, np.float32).T
    return low, high


def indoor_c(x: torch.Tensor) -> torch.Tensor:
    """Measured indoor temperature, degC, back from features (..., N_FEATURES) -> (...)."""
    return x[..., 0] * 5.0 + 20.0


def price_now(x: torch.Tensor) -> torch.Tensor:
    """Electricity price now, per kWh, back from features (..., N_FEATURES) -> (...)."""
    return x[..., 8] * PRICE_SCALE


def band_c(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The comfort band now (low, high), degC, back from features (..., N_FEATURES) -> (...) each."""
    return x[..., 2] * 5.0 + 20.0, x[..., 3] * 5.0 + 20.0


def discomfort_c(r: Rollout) -> torch.Tensor:
    """(T, N) degrees C by which each device's measured temperature at the end of each step of ``r`` (obs
    (T+1, N, N_FEATURES)) lies outside the band of that step, as the edge agent prices it in its reward."""
    lo, hi = band_c(r.obs[:-1])
    temp = indoor_c(r.obs[1:])
    return (lo - temp).clamp(min=0) + (temp - hi).clamp(min=0)


def shape_rewards(r: Rollout, cfg: ActorCriticConfig, gamma: float) -> Rollout:
    """``r`` (obs (T+1, N, N_FEATURES)) with potential-based shaping added to its rewards (T, N):
    ``gamma * phi(next) - phi(now)`` (``gamma``: the discount per tick), ``phi = (shaping_per_degc
    + shaping_kwh_per_degc * price now) * indoor temperature``, both read from the features (see
    ``ActorCriticConfig``); ``r`` itself when both weights are 0."""
    if not (cfg.shaping_per_degc or cfg.shaping_kwh_per_degc):
        return r
    phi = (cfg.shaping_per_degc + cfg.shaping_kwh_per_degc * price_now(r.obs)) * indoor_c(r.obs)  # (T+1, N)
    return replace(r, rewards=r.rewards + gamma * phi[1:] - phi[:-1])


@dataclass(frozen=True)
class ThermostatAdapter:
    """The thermostat task as an :class:`~fleet.learners.adapters.Adapter`: :func:`features` of
    an :class:`~fleet.learners.base.Observation`, :func:`shape_rewards`, :func:`discomfort_c`, layout
    :data:`LAYOUT`."""

    layout: str = LAYOUT
    n_features: int = N_FEATURES

    def features(self, obs: Observation, device: str) -> torch.Tensor:
        return features(obs, device)

    def shape_rewards(self, r: Rollout, cfg: ActorCriticConfig, gamma: float) -> Rollout:
        return shape_rewards(r, cfg, gamma)

    def discomfort(self, r: Rollout) -> torch.Tensor:
        return discomfort_c(r)


THERMOSTAT = ThermostatAdapter()
"""The default adapter of every learner (:attr:`fleet.learners.base.LearnerContext.adapter`)."""
