"""Online identification of each device's RC house by recursive least squares, batched over N.

The model is the exact discretization of the simulator's house (:func:`devices.building.rc_step`)
over one control tick of ``dt`` hours, with the inputs held over the tick::

    T' - T_out = a (T - T_out) + b P + c,      a = exp(-dt / (R C)),
                                               b = (1 - a) R COP,  c = (1 - a) R Q_internal,

linear in ``theta = (a, b, c)`` with the regressors ``x = (T - T_out, s P, 1)``: indoor ``T`` as
measured (with sensor noise), outdoor ``T_out``, and the electrical power ``P`` of the level the
device ran (its heat pump's rating; ``s`` = +1 heating, -1 cooling). What it identifies is the
time constant ``R C = -dt / ln a``, the steady-state warming per kW ``R COP = b / (1 - a)`` (the
heat pump's output per level, in degrees, ``R COP P_level``) and that of the internal gains
``R Q_internal = c / (1 - a)``. R, C and COP one by one are not identifiable from temperatures
(heat and resistance trade off); planning needs only these three.

**Recursive least squares in information form.** Each tick adds one sample to the device's
statistics: ``S <- lambda S + x x^T`` (N, 3, 3) and ``r <- lambda r + x y`` (N, 3), ``y = T' -
T_out``, with forgetting ``lambda = exp(-dt / memory)``. The estimate solves

    (A0 + W + S) theta = A0 theta0 + w + r,

where ``A0 = noise_c**2 diag(1 / std0**2)`` is a weak prior (worth less than one sample in the
directions that thermostat data excites, and what holds the others) and ``(W, w)`` the
neighbours' statistics (:mod:`fleet.learners.planner.learner`, zero alone). This is RLS exactly
(the same estimate as the covariance-form recursion with the same prior), and it is robust to
what a thermostat's data lacks: the covariance ``(A0 + W + S)^-1`` never exceeds the prior's, so
it cannot wind up when forgetting meets data that excites nothing new, and every solve is of a
positive definite matrix.

**Sensor noise.** The regressor ``T - T_out`` carries the sensor's noise, which biases plain least
squares: ``a`` comes out smaller by about ``sensor_noise**2 / var(T - T_out | P)``, which is tens
of percent of ``1 - a`` on a thermostat's data, and more data does not shrink it. Each sample
therefore adds ``x x^T - sensor_noise**2 e0 e0^T`` (bias-compensated least squares: the noise of
the reading at the start of a tick is independent of that at its end, so only the regressor's
own variance needs taking out).

**When it plans.** An estimate is used once the device has at least ``min_data`` of samples
(its own count plus what the neighbours' weigh) and is physical: time constant, gain and
internal warming within the config's ranges. Before that, or when the estimate leaves them,
the device runs the thermostat (``fallback``); rejected estimates are counted.
"""

from __future__ import annotations

import numpy as np

from fleet.learners.planner.config import IdentificationConfig
from fleet.statefile import attrs_state, load_attrs

PRIOR_SPREAD = 10.0
"""Prior standard deviations of ``1 - a`` and of ``b``, in multiples of their prior means (and of
``c``, of 2 degC of internal warming): a prior that holds only what the data leaves unexcited."""
UPPER = np.triu_indices(3)
"""The 6 distinct entries of a symmetric (3, 3) information matrix, row by row."""


class RcIdentifier:
    """The statistics and estimates of N devices' house models; see the module docstring."""

    def __init__(self, cfg: IdentificationConfig, n: int, dt_s: float) -> None:
        self.cfg, self.n, self.dt_h = cfg, n, dt_s / 3600.0
        self.forget = float(np.exp(-dt_s / cfg.memory))
        a0 = np.exp(-dt_s / cfg.prior_time_constant)
        self.theta0 = np.array([a0, (1 - a0) * cfg.prior_gain_c_per_kw, (1 - a0) * cfg.prior_internal_c])
        std0 = PRIOR_SPREAD * np.array([1 - a0, self.theta0[1], (1 - a0) * 2.0])
        self.prior = np.diag((cfg.noise_c / std0) ** 2)
        """A0 (3, 3): the prior's information, in samples of noise ``noise_c``."""
        self.info = np.zeros((n, 3, 3))
        """S (N, 3, 3): each device's information matrix from its own data."""
        self.vector = np.zeros((n, 3))
        """r (N, 3): each device's information vector from its own data."""
        self.pending = np.full((n, 4), np.nan)
        """(N, 4) the open sample of each device: regressors x (3,) and the outdoor temperature of
        the tick; NaN before the first tick."""
        self.rejected = 0
        """Estimates (device x estimate) with enough data that were not physical."""

    STATE = ("info", "vector", "pending", "rejected")

    def state_dict(self) -> dict:
        return attrs_state(self, self.STATE)

    def load_state_dict(self, state: dict) -> None:
        load_attrs(self, state, self.STATE)

    # --- data ------------------------------------------------------------------------------

    def reset(self, rows: np.ndarray) -> None:
        """Devices ``rows`` (R,) start anew: no data, no open sample."""
        self.info[rows] = 0
        self.vector[rows] = 0
        self.pending[rows] = np.nan

    def close(self, temp_c: np.ndarray) -> None:
        """Close every open sample with the indoor temperature ``temp_c`` (N,) measured at the end of its tick."""
        x, outdoor = self.pending[:, :3], self.pending[:, 3]
        ok = np.isfinite(self.pending).all(axis=1) & np.isfinite(temp_c)
        y = temp_c - outdoor
        self.info *= self.forget
        self.vector *= self.forget
        self.info[ok] += x[ok, :, None] * x[ok, None, :]
        self.info[ok, 0, 0] -= self.cfg.sensor_noise_c**2
        self.vector[ok] += x[ok] * y[ok, None]

    def open(self, temp_c: np.ndarray, outdoor_c: np.ndarray, power_kw: np.ndarray) -> None:
        """Open a sample per device: measured indoor ``temp_c``, ``outdoor_c`` and the signed
        electrical ``power_kw`` (N,) run over the tick that starts now."""
        self.pending = np.stack([temp_c - outdoor_c, power_kw, np.ones(self.n), outdoor_c], axis=1)

    def samples(self) -> np.ndarray:
        """(N,) each device's own samples, forgetting counted."""
        return self.info[:, 2, 2]

    # --- estimates -------------------------------------------------------------------------

    def estimate(self, extra_info: np.ndarray | None = None, extra_vector: np.ndarray | None = None) -> np.ndarray:
        """theta (N, 3) from the prior, the own statistics and ``extra_info`` (N, 3, 3) and
        ``extra_vector`` (N, 3) (the neighbours', already weighted), if given."""
        a = self.prior + self.info
        b = self.prior @ self.theta0 + self.vector
        if extra_info is not None:
            a, b = a + extra_info, b + extra_vector
        return np.linalg.solve(a, b[:, :, None])[:, :, 0]

    @property
    def prior_model(self) -> np.ndarray:
        """(3,) the prior's time constant (h), gain (degC/kW) and internal warming (degC)."""
        cfg = self.cfg
        return np.array([cfg.prior_time_constant / 3600.0, cfg.prior_gain_c_per_kw, cfg.prior_internal_c])

    def physical(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(ok (N,) bool, time constant (N,) h, gain (N,) degC/kW, internal warming (N,) degC) of
        estimates ``theta`` (N, 3); where not ok the three are the prior's."""
        cfg = self.cfg
        a, b, c = theta.T
        with np.errstate(divide="ignore", invalid="ignore"):
            tau_h = -self.dt_h / np.log(a)
            gain, internal = b / (1 - a), c / (1 - a)
        ok = (
            (a > 0)
            & (a < 1)
            & _within(tau_h, np.asarray(cfg.time_constant_range) / 3600.0)
            & _within(gain, cfg.gain_range_c_per_kw)
            & _within(internal, cfg.internal_range_c)
        )
        return ok, *(np.where(ok, v, p) for v, p in zip((tau_h, gain, internal), self.prior_model))

    def statistics(self) -> np.ndarray:
        """(N, 9) float64: each device's own statistics as it publishes them: the upper triangle of
        S, row by row, then r."""
        return np.concatenate([self.info[:, UPPER[0], UPPER[1]], self.vector], axis=1)


def unpack(stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, 9) statistics -> information matrices (M, 3, 3) and vectors (M, 3)."""
    info = np.zeros((len(stats), 3, 3))
    info[:, UPPER[0], UPPER[1]] = stats[:, :6]
    info[:, UPPER[1], UPPER[0]] = stats[:, :6]
    return info, stats[:, 6:].astype(float)


def _within(x: np.ndarray, bounds) -> np.ndarray:
    low, high = bounds
    return (x >= low) & (x <= high)
