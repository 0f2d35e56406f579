"""Weather forecasts on a board: where an edge agent gets the outdoor temperature ahead.

A board has no weather model to forecast from; a forecast service does, and another program
(a cron job that asks the service, a gateway) hands its forecasts to the agent through a
:class:`ForecastSource`:

- :class:`FileForecast`: a file that the other program rewrites; the agent looks at it every
  control tick and reads it again when its size, modification time or inode changed. Only a
  regular file of at most :data:`MAX_FORECAST_BYTES` is read (:mod:`fleet.files`), so a FIFO, a
  device or a huge file cannot stall or fill the board;
- :class:`MqttForecast`: the retained message on a topic (e.g. ``fleet/<site>/forecast``), which
  the broker hands to the agent when it subscribes and again whenever the publisher replaces it.

Both carry the same text, a CSV table::

    valid_s,outdoor_c
    3600,-4.5
    7200,-5.1

one row per valid time, in seconds on the agent's clock (the scenario's time: 0 at midnight of
``start_day``, as for its schedule and tariff; an agent pinned with ``--epoch`` to a mixed
fleet's clock is at ``(unix_time - epoch) * speedup``), increasing, with the device's outdoor
temperature then, degC. Until checked it is hostile: at most :data:`MAX_ROWS` rows, times finite
and strictly increasing, temperatures within :data:`devices.weather.PLAUSIBLE_RANGE_C`.

:class:`BoardForecast` turns the newest good table into the Observation's ``outdoor_ahead`` at
the scenario's lead times, interpolating linearly between rows. Nothing here raises into the
agent: a table that cannot be read or decoded is counted (``forecast_errors``) and logged, and
the last good one kept; a tick whose table is missing, older than ``max_age`` or does not reach
every lead time observes persistence (the current outdoor temperature at every lead), counted
(``forecast_fallbacks``). A board without a source observes persistence and counts nothing.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from devices.weather import PLAUSIBLE_RANGE_C
from fleet.edge.counters import Counters
from fleet.errors import ConfigError, WireError
from fleet.files import read_regular_file
from fleet.learners.base import persistence

log = logging.getLogger("fleet.edge")

MAX_FORECAST_BYTES = 64 * 1024
"""Largest forecast table read: 10 days of hourly rows are about 4 kB."""
MAX_ROWS = 2000
"""Most rows a table may have (10 days of 5-minute values fit)."""
HEADER = "valid_s,outdoor_c"


@dataclass(frozen=True)
class ForecastTable:
    """A decoded forecast: ``outdoor_c`` (K,) degC at ``valid_s`` (K,) seconds, increasing."""

    valid_s: np.ndarray
    outdoor_c: np.ndarray
    received_at: float
    """Agent-clock time at which the agent got it."""

    def at(self, times_s: np.ndarray) -> np.ndarray | None:
        """The forecast at ``times_s`` (L,), linear between rows; None unless all lie within the table."""
        if times_s[0] < self.valid_s[0] or times_s[-1] > self.valid_s[-1]:
            return None
        return np.interp(times_s, self.valid_s, self.outdoor_c)


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise WireError(f"{where}: {text[:20]!r} is not a number") from None
    if not math.isfinite(value):
        raise WireError(f"{where}: {text[:20]!r} is not a finite number")
    return value


def _row(line: str, where: str) -> tuple[float, float]:
    fields = line.split(",")
    if len(fields) != 2:
        raise WireError(f"{where}: expected 2 comma-separated fields (valid_s, outdoor_c), found {len(fields)}")
    valid_s, temp = _number(fields[0], f"{where}, valid_s"), _number(fields[1], f"{where}, outdoor_c")
    lo, hi = PLAUSIBLE_RANGE_C
    if not lo <= temp <= hi:
        raise WireError(f"{where}, outdoor_c: {temp:g} degC is outside the plausible range [{lo:g}, {hi:g}] degC")
    return valid_s, temp


def parse_forecast(data: bytes, source: str, received_at: float) -> ForecastTable:
    """The table in ``data`` (see the module docstring); :class:`WireError` naming ``source``, the
    line and the field of the first problem, quoting at most 20 characters of it."""
    if len(data) > MAX_FORECAST_BYTES:
        raise WireError(f"{source}: {len(data):,} bytes, more than the {MAX_FORECAST_BYTES:,} a forecast may have")
    try:
        lines = data.decode("ascii").strip().splitlines()
    except UnicodeDecodeError as e:
        raise WireError(f"{source}: byte {e.start} is not ASCII; a forecast is a CSV table of numbers") from None
    if not lines or lines[0].strip() != HEADER:
        raise WireError(f"{source}, line 1: expected the header {HEADER!r}")
    if not 2 <= len(lines) - 1 <= MAX_ROWS:
        raise WireError(f"{source}: {len(lines) - 1} rows; a forecast has 2 to {MAX_ROWS}")
    rows = np.array([_row(line, f"{source}, line {i}") for i, line in enumerate(lines[1:], start=2)])
    later = np.diff(rows[:, 0]) > 0
    if not later.all():
        line = int(np.argmin(later)) + 3
        raise WireError(f"{source}, line {line}, valid_s: times must increase, but it is not after line {line - 1}'s")
    return ForecastTable(rows[:, 0], rows[:, 1], received_at)


class ForecastSource(Protocol):
    """Where new forecast tables come from."""

    name: str
    """What to call it in messages, e.g. ``forecast file /run/forecast.csv``."""

    def poll(self) -> bytes | None:
        """What arrived since the last call (the newest), or None; :class:`ConfigError` if it
        could not be read."""


_MISSING = (-1, -1, -1)


class FileForecast:
    """A forecast file, read again whenever it changes (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = f"forecast file {self.path}"
        self._seen: tuple[int, int, int] | None = None
        """(inode, size, modification time in ns) of what was read last, or _MISSING."""

    def poll(self) -> bytes | None:
        try:
            st = os.stat(self.path)
        except OSError as e:
            if self._seen == _MISSING:  # said once, until the file is back
                return None
            self._seen = _MISSING
            raise ConfigError(f"{self.name}: {e.strerror}") from None
        seen = (st.st_ino, st.st_size, st.st_mtime_ns)
        if seen == self._seen:
            return None
        self._seen = seen
        return read_regular_file(self.path, MAX_FORECAST_BYTES, "forecast file")


class MqttForecast:
    """The retained forecast on ``topic`` (see the module docstring): the agent subscribes to it
    and hands what arrives there to :meth:`offer`."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.name = f"forecast on {topic}"
        self._pending: bytes | None = None

    def offer(self, payload: bytes) -> None:
        self._pending = payload

    def poll(self) -> bytes | None:
        payload, self._pending = self._pending, None
        return payload


class BoardForecast:
    """What a board observes ahead: ``source``'s newest good table at ``lead_h``, or persistence."""

    def __init__(
        self, source: ForecastSource | None, lead_h: tuple[float, ...], max_age_s: float, counters: Counters
    ) -> None:
        self.source, self.lead_h, self.max_age_s, self.counters = source, lead_h, max_age_s, counters
        self.table: ForecastTable | None = None

    def fields(self, t: float, outdoor_c: np.ndarray) -> dict:
        """The Observation's ``outdoor_ahead`` (1, L) and ``forecast_lead_h`` at agent time ``t``,
        ``outdoor_c`` (1,) the device's outdoor temperature now."""
        if self.source is None:
            return persistence(outdoor_c, self.lead_h)
        self._update(t)
        table = self.table
        ahead = None
        if table is not None and t - table.received_at <= self.max_age_s:
            ahead = table.at(t + 3600.0 * np.asarray(self.lead_h))
        if ahead is None:
            self.counters.forecast_fallbacks += 1
            return persistence(outdoor_c, self.lead_h)
        return {"outdoor_ahead": ahead[None, :], "forecast_lead_h": self.lead_h}

    def _update(self, t: float) -> None:
        """Take what the source has, if it decodes; count and log what does not."""
        try:
            data = self.source.poll()
            if data is None:
                return
            self.table = parse_forecast(data, self.source.name, t)
        except (ConfigError, WireError) as e:
            self.counters.forecast_errors += 1
            log.warning("%s; keeping the last good forecast", e)
            return
        self.counters.forecast_updates += 1
