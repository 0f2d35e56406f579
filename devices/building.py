"""Vectorized thermal physics of a fleet of buildings with heat pumps.

Each device i is a first-order RC model ``C dT/dt = (T_out - T)/R + Q`` with
``Q = sign * cop * P_hvac + Q_internal``, stepped exactly over a control tick with the inputs
held constant (:func:`rc_step`). Units: degC, kW, degC/kW, kWh/degC, hours. All arrays carry
a leading device axis of length N.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from devices.config import BuildingConfig, HvacConfig, OccupancyConfig

_SIGN = {"heat": 1.0, "cool": -1.0}


def check_shape(name: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``array.shape == shape``."""
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape} (one entry per device), got {array.shape}")


def rc_step(
    temp: np.ndarray,
    t_out: np.ndarray,
    heat_kw: np.ndarray,
    resistance: np.ndarray,
    capacitance: np.ndarray,
    dt_h: float,
) -> np.ndarray:
    """Indoor temperature after ``dt_h`` hours, exact for inputs held over the tick.

    Solves ``C dT/dt = (T_out - T)/R + heat``: with ``T_inf = T_out + R*heat``,
    ``T(dt) = T_inf + (T - T_inf) * exp(-dt/(R*C))``. Arguments are (N,) arrays (anything
    that broadcasts): temperatures degC, heat kW, R degC/kW, C kWh/degC.
    """
    t_inf = t_out + resistance * heat_kw
    return t_inf + (temp - t_inf) * np.exp(-dt_h / (resistance * capacitance))


@dataclass(frozen=True, eq=False)
class DeviceParams:
    """Per-device physical parameters, drawn once per run; arrays are read-only.

    Every array is (N,) except ``levels_kw``, (N, L) for L power levels.
    """

    resistance: np.ndarray
    """thermal resistance R, degC/kW, (N,)"""
    capacitance: np.ndarray
    """thermal capacitance C, kWh/degC, (N,)"""
    internal_gain: np.ndarray
    """internal heat gain, kW, (N,)"""
    initial_temp: np.ndarray
    """indoor temperature at t = 0, degC, (N,)"""
    outdoor_offset: np.ndarray
    """microclimate offset added to the fleet-wide outdoor temperature, degC, (N,)"""
    cop: np.ndarray
    """heat pump coefficient of performance, (N,)"""
    levels_kw: np.ndarray
    """electrical power of each level (the config's levels times the device's size factor), kW, (N, L)"""
    occupancy_shift_h: np.ndarray
    """shift of the occupancy schedule, hours, (N,)"""

    def __post_init__(self) -> None:
        if self.resistance.ndim != 1:
            raise ValueError(f"resistance must have shape (N,), got {self.resistance.shape}")
        n = self.resistance.shape[0]
        for f in fields(self):
            array = getattr(self, f.name)
            if f.name == "levels_kw":
                if array.ndim != 2 or array.shape[0] != n:
                    raise ValueError(f"levels_kw must have shape (N, L) = ({n}, L), got {array.shape}")
            else:
                check_shape(f.name, array, (n,))
            array.flags.writeable = False

    @property
    def n(self) -> int:
        """Number of devices N."""
        return self.resistance.shape[0]

    @classmethod
    def draw(
        cls,
        building: BuildingConfig,
        hvac: HvacConfig,
        occupancy: OccupancyConfig,
        n: int,
        rng: np.random.Generator,
    ) -> DeviceParams:
        """Draw the parameters of ``n`` devices.

        The draw order is fixed (so a seed always gives the same fleet): resistance,
        capacitance, internal gain, initial temperature, outdoor offset, HVAC size factor,
        COP, occupancy shift; each takes ``n`` draws from ``rng`` (a constant takes none).
        """
        if n < 1:
            raise ValueError(f"a fleet needs at least one device, got n={n}")
        resistance = building.resistance_c_per_kw.sample(rng, n)
        capacitance = building.capacitance_kwh_per_c.sample(rng, n)
        internal_gain = building.internal_gain_kw.sample(rng, n)
        initial_temp = building.initial_temp_c.sample(rng, n)
        outdoor_offset = building.outdoor_offset_c.sample(rng, n)
        size_factor = hvac.size_factor.sample(rng, n)
        cop = hvac.cop.sample(rng, n)
        shift = occupancy.shift_h.sample(rng, n)
        levels_kw = size_factor[:, None] * np.asarray(hvac.power_levels_kw, dtype=float)[None, :]
        return cls(resistance, capacitance, internal_gain, initial_temp, outdoor_offset, cop, levels_kw, shift)


class ThermostatFleet:
    """The indoor temperatures of N buildings, advanced one control tick at a time.

    ``temp`` (N,) is the current indoor temperature, degC, starting at ``params.initial_temp``.
    """

    def __init__(self, params: DeviceParams, mode: str) -> None:
        if mode not in _SIGN:
            raise ValueError(f"mode must be one of {sorted(_SIGN)}, got {mode!r}")
        self.params = params
        self.mode = mode
        self.temp = params.initial_temp.copy()

    @property
    def n_levels(self) -> int:
        """Number of power levels L (level 0 is off)."""
        return self.params.levels_kw.shape[1]

    def step(self, levels: np.ndarray, t_out: np.ndarray, dt_s: float) -> np.ndarray:
        """Run each device at its chosen level for ``dt_s`` seconds; return the electrical power.

        ``levels`` (N,) integers in ``[0, L)``; ``t_out`` (N,) the outdoor temperature of each
        device, degC (fleet-wide weather plus ``params.outdoor_offset``). Advances ``temp``
        and returns the electrical power drawn over the tick, kW, (N,).
        """
        levels = np.asarray(levels)
        check_shape("levels", levels, (self.params.n,))
        check_shape("t_out", np.asarray(t_out), (self.params.n,))
        if not np.issubdtype(levels.dtype, np.integer):
            raise ValueError(f"levels must be integers in [0, {self.n_levels}), got dtype {levels.dtype}")
        if levels.min() < 0 or levels.max() >= self.n_levels:
            raise ValueError(
                f"levels must lie in [0, {self.n_levels}), got values from {levels.min()} to {levels.max()}"
            )
        p = self.params
        power_kw = p.levels_kw[np.arange(p.n), levels]
        heat_kw = _SIGN[self.mode] * p.cop * power_kw + p.internal_gain
        self.temp = rc_step(self.temp, t_out, heat_kw, p.resistance, p.capacitance, dt_s / 3600.0)
        return power_kw
