"""What devices observe of the weather ahead: a forecast service's outdoor temperature.

A forecast is issued every ``issue_period`` from the simulation start (issue ``k`` at
``t_k = k P``) as values at whole hours ``v`` from ``t_k`` to ``t_k + P + max(lead_h)``: what the
service publishes, enough for every lead time until the next issue. A device at time ``t`` uses
the latest issue, ``k = floor(t / P)``, and reads it at ``t + lead_h``, linearly between hours.

The value at valid hour ``v`` of issue ``k`` is the truth (the weather model at ``v``) plus

    e(k, v) = bias + std(v - t_k) z(k, v),    std(tau)^2 = s0^2 + (s24^2 - s0^2) tau / 24h,

so the error's variance grows linearly with the lead ``tau`` (as a random walk's does, and as
verified 2-m temperature errors do over the first days: see :class:`devices.config.ForecastConfig`
for the values). ``z`` is a stationary standard normal field with the separable covariance

    cov(z(k, v), z(k', v')) = issue_corr^|k - k'| * exp(-|v - v'| / lead_corr_time):

one issue's errors are an AR(1) across valid hours (a weather situation that the model gets
wrong stays wrong for hours), and two issues' errors at the same valid time are correlated by
``issue_corr`` per issue between them (a new run corrects part of the last one's error). Row
``k`` is drawn as ``z(k, .) = issue_corr z(k-1, .) + sqrt(1 - issue_corr^2) w`` with ``w`` a
fresh AR(1) across hours; the hours of row ``k`` past the end of row ``k-1`` continue row
``k-1`` as its AR(1) would, which keeps the covariance above exact (the field is Markov in
``v``). The whole table, (issues, hours per issue), is drawn once from the ``forecast`` stream
for the run's horizon; nothing is drawn while the run goes.

Every device's forecast is the fleet's plus its microclimate offset, as its measured outdoor
temperature is, so its error against its own outdoor temperature is ``e``.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from devices.config import ForecastConfig
from devices.weather import Weather, ou_noise

HOUR_S = 3600.0


class Forecast(Protocol):
    """The fleet's outdoor temperature ahead."""

    lead_h: tuple[float, ...]
    """The L lead times, hours from the time asked for."""

    def ahead(self, t_s: float) -> np.ndarray:
        """(L,) forecast outdoor temperature at ``t_s + lead_h``, degC."""
        ...


def error_std(cfg: ForecastConfig, lead_h: np.ndarray) -> np.ndarray:
    """Standard deviation of the error at leads ``lead_h`` (any shape) from the issue, degC."""
    s0, s24 = cfg.error_std_0h_c, cfg.error_std_24h_c
    return np.sqrt(s0 * s0 + (s24 * s24 - s0 * s0) * np.asarray(lead_h) / 24.0)


def _continue_ar1(x0: float, phi: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) next values of a unit-variance AR(1) with coefficient ``phi`` that is at ``x0`` now."""
    out, x, scale = np.empty(n), x0, math.sqrt(1.0 - phi * phi)
    for i, e in enumerate(rng.standard_normal(n) * scale):
        x = phi * x + e
        out[i] = x
    return out


def error_field(cfg: ForecastConfig, issues: int, rng: np.random.Generator) -> np.ndarray:
    """The errors ``e(k, t_k + j h)`` of ``issues`` issues at the hours ``j`` of each: (issues, W),
    ``W = P + ceil(max lead) + 1`` hours, drawn as the module docstring says."""
    period_h = round(cfg.issue_period / HOUR_S)
    width = period_h + math.ceil(cfg.lead_h[-1]) + 1
    phi = math.exp(-HOUR_S / cfg.lead_corr_time)
    rho = cfg.issue_corr
    z = np.empty((issues, width))
    z[0] = ou_noise(1.0, cfg.lead_corr_time, HOUR_S, width, rng)
    for k in range(1, issues):
        before = np.concatenate([z[k - 1, period_h:], _continue_ar1(z[k - 1, -1], phi, period_h, rng)])
        z[k] = rho * before + math.sqrt(1.0 - rho * rho) * ou_noise(1.0, cfg.lead_corr_time, HOUR_S, width, rng)
    return cfg.bias_c + error_std(cfg, np.arange(width)) * z


class ServiceForecast:
    """A forecast service over ``weather``, for times in ``[0, horizon_s]``: its issues' hourly
    values ``values`` (issues, W) are drawn at construction (:func:`error_field`)."""

    def __init__(self, cfg: ForecastConfig, weather: Weather, horizon_s: float, rng: np.random.Generator) -> None:
        self.lead_h = cfg.lead_h
        self.period_s = cfg.issue_period
        issues = math.floor(horizon_s / self.period_s) + 1
        errors = error_field(cfg, issues, rng)
        period_h = round(self.period_s / HOUR_S)
        hours = period_h * (issues - 1) + errors.shape[1]
        truth = np.array([weather.outdoor_c(h * HOUR_S) for h in range(hours)])
        rows = period_h * np.arange(issues)[:, None] + np.arange(errors.shape[1])  # (issues, W) valid hours
        self.values = truth[rows] + errors
        self.horizon_s = horizon_s

    def ahead(self, t_s: float) -> np.ndarray:
        """(L,) the latest issue's forecast at ``t_s + lead_h``; ``ValueError`` outside ``[0, horizon_s]``."""
        if not 0 <= t_s <= self.horizon_s:
            raise ValueError(f"the forecast covers t_s in [0, {self.horizon_s}] s, asked for {t_s} s")
        k = int(t_s // self.period_s)
        at_h = (t_s - k * self.period_s) / HOUR_S + np.asarray(self.lead_h)
        return np.interp(at_h, np.arange(self.values.shape[1]), self.values[k])
