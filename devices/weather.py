"""Fleet-wide outdoor temperature: a synthetic climate, or an EnergyPlus weather (EPW) file.

Time is ``t_s``, seconds since the simulation start, which is 00:00 local time on day-of-year
``start_day`` (1..365). A weather model gives one temperature for the whole fleet; each
device adds its own microclimate offset (:attr:`devices.building.DeviceParams.outdoor_offset`).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Protocol

import numpy as np

from devices.config import EpwWeatherConfig, SyntheticWeatherConfig, WeatherConfig
from fleet.errors import ConfigError
from fleet.files import read_regular_file

HOURS_PER_YEAR = 8760
"""Hours in a (non-leap) year, the length of an EPW series."""

_COLDEST_DAY = 15.5  # middle of day-of-year 15 (mid-January, northern hemisphere)
_DIURNAL_MIN_H = 5.0  # daily minimum near sunrise
_DIURNAL_MAX_H = 15.0  # daily maximum in mid-afternoon


class Weather(Protocol):
    """Outdoor temperature of the fleet's region."""

    def outdoor_c(self, t_s: float) -> float:
        """Outdoor dry-bulb temperature at time ``t_s``, degC."""
        ...


def _check_start_day(start_day: int) -> None:
    if not 1 <= start_day <= 365:
        raise ValueError(f"start_day is a day of the year in [1, 365], got {start_day}")


# --- synthetic weather ---------------------------------------------------------------------


def diurnal_shape(hour: np.ndarray) -> np.ndarray:
    """Daily cycle in [-1, 1]: -1 at 05:00, rising to +1 at 15:00, falling back overnight.

    Two half cosines (10 h up, 14 h down), continuous, with a daily mean of 0. ``hour`` (H,)
    hours of the day; returns (H,).
    """
    rise_h = _DIURNAL_MAX_H - _DIURNAL_MIN_H
    since_min = (hour - _DIURNAL_MIN_H) % 24.0
    rising = -np.cos(np.pi * since_min / rise_h)
    falling = np.cos(np.pi * (since_min - rise_h) / (24.0 - rise_h))
    return np.where(since_min < rise_h, rising, falling)


def ou_noise(std: float, corr_time_s: float, step_s: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) samples, ``step_s`` apart, of a stationary Ornstein-Uhlenbeck process.

    Exact AR(1) discretization: ``x[k] = phi x[k-1] + std sqrt(1 - phi^2) z[k]`` with
    ``phi = exp(-step_s / corr_time_s)`` and ``x[0] ~ N(0, std^2)``. Draws ``n`` standard normals
    from ``rng``, none when ``std == 0``.
    """
    if std == 0:
        return np.zeros(n)
    phi = math.exp(-step_s / corr_time_s)
    z = rng.standard_normal(n)
    innovations = std * math.sqrt(1.0 - phi * phi) * z[1:]
    path = itertools.accumulate(innovations.tolist(), lambda prev, e: phi * prev + e, initial=std * float(z[0]))
    return np.fromiter(path, dtype=float, count=n)


class SyntheticWeather:
    """Seasonal cosine + asymmetric diurnal cycle + Ornstein-Uhlenbeck noise, sampled hourly.

    The hourly series ``hourly_c`` (H,) covers the horizon plus one day; :meth:`outdoor_c`
    interpolates it linearly. Draws from ``rng`` only for the noise (none if its std is 0).
    """

    step_s = 3600.0
    """spacing of the precomputed series, seconds"""

    def __init__(self, cfg: SyntheticWeatherConfig, start_day: int, horizon_s: float, rng: np.random.Generator):
        _check_start_day(start_day)
        if not horizon_s >= 0:
            raise ValueError(f"horizon_s must be >= 0, got {horizon_s}")
        n = math.ceil(horizon_s / self.step_s) + 24 + 1
        hours = np.arange(n, dtype=float)
        day_of_year = start_day + hours / 24.0
        seasonal = -cfg.seasonal_amplitude_c * np.cos(2 * np.pi * (day_of_year - _COLDEST_DAY) / 365.0)
        diurnal = cfg.diurnal_amplitude_c * diurnal_shape(hours % 24.0)
        noise = ou_noise(cfg.noise_std_c, cfg.noise_corr_time, self.step_s, n, rng)
        self.hourly_c = cfg.mean_c + seasonal + diurnal + noise

    def outdoor_c(self, t_s: float) -> float:
        """Outdoor temperature at ``t_s``, degC; ``ValueError`` outside the precomputed series."""
        x = t_s / self.step_s
        last = len(self.hourly_c) - 1
        if not 0 <= x <= last:
            raise ValueError(
                f"the synthetic weather covers t_s in [0, {last * self.step_s}] s, asked for {t_s} s; "
                "build it with a longer horizon_s"
            )
        i = min(int(x), last - 1)
        return float(self.hourly_c[i] + (x - i) * (self.hourly_c[i + 1] - self.hourly_c[i]))


# --- EPW files -----------------------------------------------------------------------------

_EPW_HEADER = (
    "LOCATION",
    "DESIGN CONDITIONS",
    "TYPICAL/EXTREME PERIODS",
    "GROUND TEMPERATURES",
    "HOLIDAYS/DAYLIGHT SAVINGS",
    "COMMENTS 1",
    "COMMENTS 2",
    "DATA PERIODS",
)
_EPW_MIN_FIELDS = 7
_EPW_MISSING = (99.9, 9999.0)  # 99.9 is the EPW spec's dry-bulb marker; 9999 is found in the wild
PLAUSIBLE_RANGE_C = (-90.0, 70.0)
"""Outdoor temperatures a weather file or a forecast may hold, degC (the records are -89.2 and 56.7)."""
_LEAP_HOURS = HOURS_PER_YEAR + 24
MAX_EPW_BYTES = 16 * 2**20
"""Largest weather file read: an EPW year is 1.5-2 MB (8784 rows of about 200 characters)."""


def _epw_lines(path: Path) -> list[str]:
    """The file's lines without trailing blank lines; ``ConfigError`` if it is not a regular file
    of at most :data:`MAX_EPW_BYTES` or cannot be read."""
    raw = read_regular_file(path, MAX_EPW_BYTES, "weather file")
    lines = raw.removeprefix(b"\xef\xbb\xbf").decode("latin-1").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _check_epw_header(path: Path, lines: list[str]) -> None:
    for i, keyword in enumerate(_EPW_HEADER):
        if i >= len(lines):
            raise ConfigError(f"{path}, line {i + 1}: the file ends inside the EPW header, before '{keyword}'")
        if not lines[i].startswith(keyword):
            raise ConfigError(
                f"{path}, line {i + 1}: does not start with '{keyword}', as an EPW header line must; "
                "is this an EPW file?"
            )


def _epw_fields(path: Path, line_no: int, line: str) -> list[str]:
    fields = line.split(",")
    if len(fields) < _EPW_MIN_FIELDS:
        raise ConfigError(
            f"{path}, line {line_no}: expected at least {_EPW_MIN_FIELDS} comma-separated fields "
            f"(year, month, day, hour, minute, flags, dry bulb temperature), found {len(fields)}"
        )
    return fields


def _epw_dry_bulb(path: Path, line_no: int, fields: list[str]) -> float:
    where = f"{path}, line {line_no}, field 7 (dry bulb temperature)"
    text = fields[6].strip()
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{where}: {text[:20]!r}{'...' * (len(text) > 20)} is not a number") from None
    if value in _EPW_MISSING:
        raise ConfigError(
            f"{where}: {value:g} marks missing data; fill the gap (e.g. interpolate) before using the file"
        )
    lo, hi = PLAUSIBLE_RANGE_C
    if not lo <= value <= hi:
        raise ConfigError(f"{where}: {value:g} degC is outside the plausible range [{lo}, {hi}] degC")
    return value


def _epw_is_feb29(path: Path, line_no: int, fields: list[str]) -> bool:
    try:
        return int(fields[1]) == 2 and int(fields[2]) == 29
    except ValueError:
        raise ConfigError(f"{path}, line {line_no}, fields 2-3: month and day must be integers") from None


def read_epw(path: str | Path) -> np.ndarray:
    """Hourly dry-bulb temperature of an EPW file, degC, shape (8760,).

    Row k (0-based) is the hour ending at k+1 hours after January 1, 00:00. A leap-year file
    (8784 rows) loses its February 29. Any problem raises :class:`ConfigError` naming the
    file and, where there is one, the line and field. Only a regular file of at most
    :data:`MAX_EPW_BYTES` is read (not a FIFO, a device or a directory), and no error quotes a
    file whose header is not EPW's.
    """
    path = Path(path)
    lines = _epw_lines(path)
    _check_epw_header(path, lines)
    header_len = len(_EPW_HEADER)
    rows = lines[header_len:]
    if len(rows) not in (HOURS_PER_YEAR, _LEAP_HOURS):
        raise ConfigError(
            f"{path}, line {len(lines)}: expected {HOURS_PER_YEAR} hourly data rows after the {header_len}-line "
            f"header ({_LEAP_HOURS} in a leap year), found {len(rows)}; is the file truncated?"
        )
    fields = [_epw_fields(path, header_len + 1 + k, row) for k, row in enumerate(rows)]
    temps = np.array([_epw_dry_bulb(path, header_len + 1 + k, f) for k, f in enumerate(fields)])
    if len(rows) == _LEAP_HOURS:
        feb29 = np.array([_epw_is_feb29(path, header_len + 1 + k, f) for k, f in enumerate(fields)])
        if feb29.sum() != 24:
            raise ConfigError(
                f"{path}: {_LEAP_HOURS} data rows (a leap year) need 24 rows dated February 29, found {feb29.sum()}"
            )
        temps = temps[~feb29]
    return temps


_EPW_FLAGS = "?9?9?9?9E0?9?9?9?9?9?9?9?9?9?9?9?9?9*9*9?9?9?9"
_EPW_YEAR = 2001  # a non-leap year starting on a Monday


def _epw_header_lines(location: str) -> list[str]:
    return [
        f"LOCATION,{location},-,-,synthetic,999999,0.00,0.00,0.0,0.0",
        "DESIGN CONDITIONS,0",
        "TYPICAL/EXTREME PERIODS,0",
        "GROUND TEMPERATURES,0",
        "HOLIDAYS/DAYLIGHT SAVINGS,No,0,0,0",
        "COMMENTS 1,Written by devices.weather.write_epw",
        "COMMENTS 2,Only the dry bulb temperature is data; the other fields are fillers",
        "DATA PERIODS,1,1,Data,Monday, 1/ 1,12/31",
    ]


def _epw_data_row(month: int, day: int, hour: int, temp_c: float) -> str:
    # Fillers: dew point 4 degC below dry bulb with the matching RH (rule of thumb
    # RH ~ 100 - 5 (T - Td)), sea-level pressure, no solar radiation, light southerly wind,
    # half-covered sky, EPW's "missing/unlimited" codes for visibility and ceiling.
    return (
        f"{_EPW_YEAR},{month},{day},{hour},0,{_EPW_FLAGS},{temp_c:.1f},{temp_c - 4.0:.1f},80,101325,"
        "0,0,300,0,0,0,0,0,0,0,180,3.0,5,5,9999,77777,9,999999999,10,0.1,0,99,0.2,0.0,1.0"
    )


def write_epw(path: str | Path, temps_c: np.ndarray, location: str = "Synthetic") -> None:
    """Write an EPW file whose dry bulb temperature is ``temps_c`` (8760,), degC.

    Row k holds the hour ending at k+1 hours after January 1, 00:00 (the convention of
    :func:`read_epw`), rounded to 0.1 degC as EPW stores it; the other 28 fields of each row
    are plausible fillers.
    """
    temps = np.asarray(temps_c, dtype=float)
    if temps.shape != (HOURS_PER_YEAR,):
        raise ValueError(f"temps_c must have shape ({HOURS_PER_YEAR},) (one value per hour), got {temps.shape}")
    lo, hi = PLAUSIBLE_RANGE_C
    bad = np.flatnonzero(~((temps >= lo) & (temps <= hi)))
    if bad.size:
        raise ValueError(f"temps_c[{bad[0]}] = {temps[bad[0]]} is outside [{lo}, {hi}] degC")
    if "," in location or "\n" in location:
        raise ValueError(f"location must not contain commas or newlines, got {location!r}")
    days = np.arange(f"{_EPW_YEAR}-01-01", f"{_EPW_YEAR + 1}-01-01", dtype="datetime64[D]")
    months = days.astype("datetime64[M]").astype(int) % 12 + 1
    days_of_month = (days - days.astype("datetime64[M]")).astype(int) + 1
    rows = [
        _epw_data_row(int(months[k // 24]), int(days_of_month[k // 24]), k % 24 + 1, float(t))
        for k, t in enumerate(temps)
    ]
    text = "\n".join(_epw_header_lines(location) + rows) + "\n"
    Path(path).write_text(text, encoding="latin-1", errors="replace")


class EpwWeather:
    """The hourly dry bulb temperature of an EPW file, repeated every year.

    EPW row k is taken as the temperature at k+1 hours after January 1, 00:00 (the end of its
    hour, as EnergyPlus reads it), and :meth:`outdoor_c` interpolates linearly between rows,
    wrapping from December 31, 24:00 to January 1, 01:00.
    """

    def __init__(self, cfg: EpwWeatherConfig, start_day: int, base_dir: Path):
        _check_start_day(start_day)
        path = Path(cfg.path)
        self.path = path if path.is_absolute() else Path(base_dir) / path
        self.hourly_c = read_epw(self.path)
        self._start_h = (start_day - 1) * 24.0

    def outdoor_c(self, t_s: float) -> float:
        """Outdoor temperature at ``t_s``, degC, for any ``t_s`` (the year repeats)."""
        x = self._start_h + t_s / 3600.0 - 1.0  # position in rows: row k sits at hour k + 1
        i = math.floor(x)
        a = self.hourly_c[i % HOURS_PER_YEAR]
        b = self.hourly_c[(i + 1) % HOURS_PER_YEAR]
        return float(a + (x - i) * (b - a))


def make_weather(
    cfg: WeatherConfig, start_day: int, horizon_s: float, rng: np.random.Generator, base_dir: Path
) -> Weather:
    """The weather model that ``cfg`` describes (``base_dir`` resolves relative EPW paths)."""
    if isinstance(cfg, SyntheticWeatherConfig):
        return SyntheticWeather(cfg, start_day, horizon_s, rng)
    return EpwWeather(cfg, start_day, base_dir)
