"""Plans of N devices by dynamic programming over their identified house models, batched.

A plan is the optimal cost-to-go (K + 1, N, G) on a temperature grid before each of the next K
control ticks (:func:`fleet.optimum.cost_to_go`, the perfect-information optimum's own
programme), made from what each device knows when it plans: its identified model
(:mod:`.identification`), its comfort schedule and tariff over the horizon
(:class:`~fleet.learners.base.Lookahead`) and the outdoor temperature ahead (the weather
forecast the observation carries, :func:`outdoor_ahead`). The band it
plans for is narrowed by ``margin_c`` on both sides. At each tick until the next plan a device
takes the level whose cost now plus cost-to-go from where the model says it leads is least, at
the temperature it measures and in the conditions it observes (:func:`choose`).
"""

from __future__ import annotations

import numpy as np

from fleet.learners.base import Observation
from fleet.optimum import HouseModel, Stage, cost_to_go, level_costs


def house_model(
    time_constant_h: np.ndarray, gain_c_per_kw: np.ndarray, internal_c: np.ndarray, levels_kw: np.ndarray, sign: float
) -> HouseModel:
    """The identified houses as the programme steps them: R = 1, C = the time constant (N,) h,
    and the heat of each level (N, L) in steady-state degrees, ``sign * gain * P + internal``."""
    heat = sign * gain_c_per_kw[:, None] * levels_kw + internal_c[:, None]
    return HouseModel(np.ones_like(time_constant_h), time_constant_h, levels_kw, heat)


def outdoor_ahead(obs: Observation, hours: np.ndarray) -> np.ndarray:
    """(N, K) the outdoor temperature at ``hours`` (K,) ahead: the observation's forecast
    (``outdoor_ahead`` at ``forecast_lead_h``, and ``outdoor_c`` now) interpolated linearly in
    time, held at its last lead beyond it."""
    leads = np.r_[0.0, obs.forecast_lead_h]  # (L + 1,)
    known = np.concatenate([obs.outdoor_c[:, None], obs.outdoor_ahead], axis=1)  # (N, L + 1)
    weights = np.stack(
        [np.interp(hours, leads, np.eye(len(leads))[j]) for j in range(len(leads))], axis=1
    )  # (K, L + 1)
    return known @ weights.T


def stages(obs: Observation, margin_c: float) -> list[Stage]:
    """The K ticks ahead of ``obs`` (at its ``lookahead.hours``), each (N,) per field."""
    ahead = obs.lookahead
    lo, hi, price = ahead.band_lo + margin_c, ahead.band_hi - margin_c, ahead.price  # (N, K) each
    outdoor = outdoor_ahead(obs, ahead.hours)
    return [Stage(outdoor[:, k], price[:, k], lo[:, k], hi[:, k]) for k in range(len(ahead.hours))]


def plan(house: HouseModel, obs: Observation, weight: float, margin_c: float, dt_h: float, grid) -> np.ndarray:
    """The cost-to-go (K + 1, N, G) float32 of every device over the ticks after ``obs``."""
    return cost_to_go(house, stages(obs, margin_c), weight, dt_h, tuple(grid))


def choose(
    house: HouseModel,
    obs: Observation,
    next_value: np.ndarray,
    weight: float,
    margin_c: float,
    dt_h: float,
    grid,
) -> np.ndarray:
    """(N,) int64: each device's best level now, from its measured temperature, the conditions it
    observes and the plan's cost-to-go ``next_value`` (N, G) after this tick."""
    now = Stage(obs.outdoor_c, obs.price, obs.band_lo + margin_c, obs.band_hi - margin_c)
    q = level_costs(house, now, obs.temp_c[:, None], next_value, weight, dt_h, tuple(grid))[:, :, 0]
    return np.argmin(q, axis=0).astype(np.int64)
