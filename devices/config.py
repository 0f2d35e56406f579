"""Typed, strict configuration of the device models: building, HVAC, sensors, weather,
occupancy, tariff and the rule-based baseline thermostat.

Per-device parameters are distributions (:data:`fleet.config.Dist`) whose support is checked
against the physical range of the parameter, so a capacitance can never be drawn negative.
Every default below says where its numbers come from.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from fleet.config import FiniteFloat, Normal, PositiveDuration, StrictModel, Uniform, dist_in

NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Hour = Annotated[float, Field(ge=0, le=24)]


# --- building and HVAC ---------------------------------------------------------------------


class BuildingConfig(StrictModel):
    """First-order RC model of one dwelling: ``C dT/dt = (T_out - T)/R + Q_hvac + Q_internal``."""

    # Heat-loss coefficients UA of detached houses are ~170-330 W/K (well insulated to
    # average stock), i.e. R = 1/UA ~ 3-6 degC/kW.
    resistance_c_per_kw: dist_in(0, strict_low=True) = Uniform(low=3.0, high=6.0)
    """thermal resistance R between indoor air and outdoors, degC/kW"""
    # Effective capacitance of air + furniture + interior mass of a house: ~15-35 MJ/K,
    # i.e. 4-10 kWh/degC; with R above the time constant RC is 12-60 h.
    capacitance_kwh_per_c: dist_in(0, strict_low=True) = Uniform(low=4.0, high=10.0)
    """thermal capacitance C of the indoor air and interior mass, kWh/degC"""
    # Average gains of occupants, appliances and lighting: ~100-500 W per dwelling.
    internal_gain_kw: dist_in(0) = Uniform(low=0.1, high=0.5)
    """constant internal heat gain (people, appliances), kW"""
    initial_temp_c: dist_in(-40, 60) = Uniform(low=19, high=21)
    """indoor temperature at the start of the simulation, degC"""
    # Urban heat island / exposure differences between neighbouring houses: ~0.5 degC.
    outdoor_offset_c: dist_in(-10, 10) = Normal(mean=0, std=0.5, low=-2, high=2)
    """microclimate offset added to the fleet-wide outdoor temperature, degC"""


class HvacConfig(StrictModel):
    """A heat pump (or air conditioner) with a few discrete electrical power levels."""

    mode: Literal["heat", "cool"] = "heat"
    """whether the unit heats or cools the building"""
    # Residential air-source heat pumps draw ~1-3 kW electrical at full load.
    power_levels_kw: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0)
    """electrical power of each level, kW: first 0 (off), strictly increasing"""
    size_factor: dist_in(0, strict_low=True) = Uniform(low=0.8, high=1.2)
    """per-device scale of the power levels (units are sized to their house, +/-20%)"""
    # Seasonal COP of air-source heat pumps: ~2.5-3.5 (lower in cold snaps).
    cop: dist_in(0, strict_low=True) = Uniform(low=2.5, high=3.5)
    """coefficient of performance: thermal power delivered per unit of electrical power"""

    @field_validator("power_levels_kw")
    @classmethod
    def _valid_levels(cls, levels: tuple[float, ...]) -> tuple[float, ...]:
        if len(levels) < 2:
            raise ValueError(f"needs at least 2 levels (off and on), got {len(levels)}")
        if not all(math.isfinite(x) for x in levels):
            raise ValueError(f"levels must be finite numbers, got {levels}")
        if levels[0] != 0:
            raise ValueError(f"the first level must be 0 (off), got {levels[0]}")
        for i in range(1, len(levels)):
            if levels[i] <= levels[i - 1]:
                raise ValueError(
                    f"levels must be strictly increasing, "
                    f"but level {i} ({levels[i]}) <= level {i - 1} ({levels[i - 1]})"
                )
        return levels


class SensorConfig(StrictModel):
    """Measurement noise of the device's sensors."""

    # Thermistors of consumer thermostats: +/-0.1-0.5 degC accuracy, 0.1 degC resolution.
    temp_noise_std_c: NonNegativeFloat = 0.1
    """standard deviation of the Gaussian noise on the indoor temperature reading, degC"""


# --- weather -------------------------------------------------------------------------------

FORECAST_LEAD_H = tuple(float(h) for h in range(1, 25))
"""Default lead times of a forecast, hours: hourly (the resolution at which forecast services
publish 2-m temperature) up to 24 h, so that a day-ahead planner sees one whole comfort
schedule and tariff cycle, including the night's cold and the evening's price peak."""


class SyntheticWeatherConfig(StrictModel):
    """Outdoor temperature = seasonal cosine + asymmetric diurnal cycle + Ornstein-Uhlenbeck noise."""

    source: Literal["synthetic"] = "synthetic"
    """selects this weather model"""
    # A cold continental climate (annual mean ~3 degC, January ~-7 degC, July ~13 degC).
    mean_c: FiniteFloat = 3.0
    """annual mean outdoor temperature, degC"""
    seasonal_amplitude_c: NonNegativeFloat = 10.0
    """half the difference between the warmest and the coldest day; coldest around day 15, degC"""
    # Typical diurnal range of 6-10 degC in temperate climates.
    diurnal_amplitude_c: NonNegativeFloat = 4.0
    """half the daily range; minimum around 05:00, maximum around 15:00, degC"""
    # Day-to-day weather anomalies of ~1-3 degC decorrelating over hours.
    noise_std_c: NonNegativeFloat = 1.5
    """stationary standard deviation of the weather noise, degC"""
    noise_corr_time: PositiveDuration = 6 * 3600.0
    """correlation time of the (Ornstein-Uhlenbeck) weather noise, seconds or e.g. '6h'"""


class EpwWeatherConfig(StrictModel):
    """Hourly dry-bulb temperature of an EnergyPlus weather (EPW) file, repeated every year."""

    source: Literal["epw"] = "epw"
    """selects this weather model"""
    path: Annotated[str, Field(min_length=1)]
    """EPW file; a relative path is resolved against the scenario file's folder"""


WeatherConfig = Annotated[SyntheticWeatherConfig | EpwWeatherConfig, Field(discriminator="source")]
"""Either weather model, chosen by ``source``."""


# --- occupancy -----------------------------------------------------------------------------


class OccupancyConfig(StrictModel):
    """When people are home, and the comfort band that applies then and otherwise."""

    # Heating comfort range of ASHRAE 55 / EN 16798 category II: ~20-23 degC.
    occupied_band_c: tuple[FiniteFloat, FiniteFloat] = (20.0, 23.0)
    """comfort band (low, high) when occupied, degC"""
    # Usual setback/setup temperatures when nobody is home.
    unoccupied_band_c: tuple[FiniteFloat, FiniteFloat] = (16.0, 26.0)
    """comfort band (low, high) when unoccupied, degC"""
    # A working household: home overnight and in the evening.
    occupied_hours: tuple[tuple[Hour, Hour], ...] = ((0.0, 7.0), (17.0, 24.0))
    """occupied intervals [start, end) in hours of the day, non-overlapping"""
    shift_h: dist_in(-12, 12) = Normal(mean=0, std=0.5, low=-2, high=2)
    """per-device shift of the schedule, hours (positive: everything happens later)"""

    @field_validator("occupied_band_c", "unoccupied_band_c")
    @classmethod
    def _valid_band(cls, band: tuple[float, float]) -> tuple[float, float]:
        if not band[0] < band[1]:
            raise ValueError(f"the lower bound ({band[0]}) must be below the upper bound ({band[1]})")
        return band

    @field_validator("occupied_hours")
    @classmethod
    def _valid_hours(cls, hours: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        for start, end in hours:
            if not start < end:
                raise ValueError(f"interval ({start}, {end}) must start before it ends")
        ordered = sorted(hours)
        for (s0, e0), (s1, e1) in zip(ordered, ordered[1:]):
            if s1 < e0:
                raise ValueError(f"intervals ({s0}, {e0}) and ({s1}, {e1}) overlap on hours [{s1}, {min(e0, e1)})")
        return hours


# --- tariffs -------------------------------------------------------------------------------


class _Tariff(StrictModel):
    currency: str = "EUR"
    """ISO 4217 code of the currency the prices are in (EUR, USD, GBP...); costs are reported in it"""

    @field_validator("currency")
    @classmethod
    def _iso_code(cls, code: str) -> str:
        if not (len(code) == 3 and code.isascii() and code.isalpha() and code.isupper()):
            raise ValueError("must be an ISO 4217 currency code of three capital letters, e.g. EUR, USD or GBP")
        return code


class FlatTariffConfig(_Tariff):
    """The same energy price at every hour."""

    kind: Literal["flat"] = "flat"
    """selects this tariff"""
    # Average residential electricity price in Europe/North America: ~0.15-0.35 per kWh (EUR or USD).
    price_per_kwh: NonNegativeFloat = 0.25
    """energy price, per kWh in ``currency``"""


class TouPeriod(StrictModel):
    """One period [start_h, end_h) of a time-of-use tariff."""

    start_h: Hour
    """first hour of the period (included)"""
    end_h: Hour
    """hour at which the period ends (excluded)"""
    price_per_kwh: NonNegativeFloat
    """energy price during the period, per kWh in the tariff's ``currency``"""

    @model_validator(mode="after")
    def _ordered(self) -> TouPeriod:
        if not self.start_h < self.end_h:
            raise ValueError(
                f"start_h ({self.start_h}) must be before end_h ({self.end_h}); split a period across midnight in two"
            )
        return self


class TouTariffConfig(_Tariff):
    """Time-of-use tariff: prices by hour of the day, periods tiling [0, 24) exactly."""

    kind: Literal["tou"] = "tou"
    """selects this tariff"""
    periods: tuple[TouPeriod, ...]
    """the periods, which must cover every hour of the day exactly once"""

    @field_validator("periods")
    @classmethod
    def _tile_the_day(cls, periods: tuple[TouPeriod, ...]) -> tuple[TouPeriod, ...]:
        if not periods:
            raise ValueError("needs at least one period covering [0, 24)")
        ordered = sorted(periods, key=lambda p: p.start_h)
        covered_until = 0.0
        for p in ordered:
            if p.start_h > covered_until:
                raise ValueError(f"hours [{covered_until}, {p.start_h}) are not covered by any period")
            if p.start_h < covered_until:
                raise ValueError(
                    f"hours [{p.start_h}, {min(covered_until, p.end_h)}) are covered by more than one period"
                )
            covered_until = p.end_h
        if covered_until < 24:
            raise ValueError(f"hours [{covered_until}, 24) are not covered by any period")
        return periods


TariffConfig = Annotated[FlatTariffConfig | TouTariffConfig, Field(discriminator="kind")]
"""Either tariff, chosen by ``kind``."""


# --- baseline controller -------------------------------------------------------------------


class RuleBasedConfig(StrictModel):
    """The deadband (bang-bang) thermostat used as the non-learning baseline."""

    # Residential thermostats switch with a 0.5-1 degC hysteresis.
    deadband_c: PositiveFloat = 0.5
    """hysteresis width: heating stays on until the band's low bound + deadband, degC"""
    # "Smart recovery" of programmable thermostats: reach the next setpoint when it starts.
    preheat_h: Literal[0, 1, 2, 3, 4] = 0
    """follow the comfort band that applies this many hours ahead when it is tighter (heat for
    a band that rises, cool for one that falls): 0 is the plain deadband; 1-4 use the device's
    schedule preview"""
