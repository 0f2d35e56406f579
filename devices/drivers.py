"""Drivers for one physical thermostat: read its indoor temperature, switch its HVAC.

A :class:`Driver` is what the edge agent sees of the hardware: :meth:`~Driver.read` gives a
:class:`Reading` (the indoor temperature; outdoor temperature, price and occupancy come from
elsewhere), :meth:`~Driver.apply` sets the HVAC power level in ``[0, n_levels)``, and
:meth:`~Driver.close` switches it off at shutdown. Two implementations:

- :class:`SimulatedThermostatDriver`: one simulated building (the fleet physics of
  :mod:`devices.building` with N = 1) advanced by the time that passed on a clock between calls;
- :class:`SysfsDriver`: a DS18B20 1-wire thermometer and a relay on a GPIO pin, through the
  Linux sysfs interfaces of a board such as a Raspberry Pi.

Errors: a reading or a switch that fails raises :class:`DriverError` (a
:class:`fleet.errors.FleetError`) whose message names the file and the value at fault. A
failed read is expected now and then on real hardware (a CRC error on a long cable): the
agent catches it, counts it and keeps acting on the last good reading. A level outside
``[0, n_levels)`` is a bug in the caller and raises ``ValueError``.

Wiring a Raspberry Pi
---------------------
DS18B20: VDD to 3.3 V (pin 1), GND to ground (pin 6), DQ to GPIO4 (pin 7), and a 4.7 kOhm
pull-up resistor between DQ and 3.3 V. Add ``dtoverlay=w1-gpio`` (``gpiopin=4`` is the
default) to ``/boot/firmware/config.txt`` (``/boot/config.txt`` before Bookworm) and reboot;
the sensor then appears as ``/sys/bus/w1/devices/28-<serial>/``. One conversion takes about
0.75 s, so :meth:`SysfsDriver.read` blocks that long.

Relay: a relay module's IN to a free GPIO, e.g. GPIO17 (pin 11), its VCC and GND to 5 V
(pin 2) and ground (pin 9). Many cheap modules switch on when IN is low: pass
``active_low=True``. Let the relay close the HVAC's low-voltage call-for-heat circuit (the
thermostat terminals), not mains. ``gpio`` is the *sysfs* number: the BCM number plus the base
of the GPIO chip, 0 on older kernels and 512 or more since Linux 6.6; read it from
``/sys/class/gpio/gpiochip*/base`` of the chip labelled ``pinctrl-bcm2835``/``pinctrl-bcm2711``
(``pinctrl-rp1`` on a Pi 5). The agent's user needs to be in the ``gpio`` group.
"""

from __future__ import annotations

import math
import operator
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from devices.building import DeviceParams, ThermostatFleet
from devices.sensors import sense_temperature
from devices.weather import Weather
from fleet.errors import FleetError


class DriverError(FleetError):
    """The hardware gave no valid reading or did not take a command."""


@dataclass(frozen=True)
class Reading:
    """What a thermostat senses itself."""

    indoor_c: float
    """indoor air temperature, degC"""


class Driver(Protocol):
    """One physical (or simulated) thermostat: a temperature sensor and an HVAC unit."""

    n_levels: int
    """number of HVAC power levels; level 0 is off"""

    def read(self) -> Reading:
        """The current reading; :class:`DriverError` when the sensor gives no valid value
        (count it and keep the last good reading)."""
        ...

    def apply(self, level: int) -> None:
        """Run the HVAC at ``level`` in ``[0, n_levels)`` until the next call (``ValueError``
        outside); :class:`DriverError` when the actuator does not take it."""
        ...

    def close(self) -> None:
        """Switch the HVAC off for good, at shutdown."""
        ...


def check_level(level: int, n_levels: int) -> int:
    """``level`` as an ``int``; ``ValueError`` unless it is an integer in ``[0, n_levels)``."""
    try:
        value = operator.index(level)
    except TypeError:
        raise ValueError(f"level must be an integer in [0, {n_levels}), got {level!r}") from None
    if not 0 <= value < n_levels:
        raise ValueError(f"level must lie in [0, {n_levels}), got {value}")
    return value


# --- simulated ------------------------------------------------------------------------------


class SimulatedThermostatDriver:
    """One simulated building with its heat pump, on the clock the agent runs on.

    ``clock()`` gives the time in seconds since the start of the weather series (``env.now``
    of the agent's SimPy environment, simulated or real-time); it is read at construction
    and at every call. Each call first advances the building from the previous call to
    ``clock()`` with the level set then (held in between, like a real relay) and the outdoor
    temperature ``weather.outdoor_c(t) + params.outdoor_offset``, in exact RC steps of at most
    :attr:`max_step_s` so that the weather is followed over long gaps. A clock is cleaner than
    passing ``now`` to every call: the driver then has the same signature as the hardware one,
    whose physics runs on its own.

    ``params`` describes one device (N = 1), e.g. ``DeviceParams.draw(building, hvac,
    occupancy, 1, rng)``; ``mode`` is ``"heat"`` or ``"cool"``; ``weather`` must cover every
    time the clock reaches (a synthetic one is built for a horizon, an EPW one repeats).
    Readings carry Gaussian noise of std ``noise_std_c`` drawn from ``rng``, so a seed fixes
    every reading; :attr:`building` holds the true state (``building.temp``, (1,) degC).
    """

    max_step_s = 300.0
    """longest step over which the outdoor temperature is held, seconds"""

    def __init__(
        self,
        params: DeviceParams,
        mode: str,
        weather: Weather,
        clock: Callable[[], float],
        rng: np.random.Generator,
        noise_std_c: float = 0.0,
    ) -> None:
        if params.n != 1:
            raise ValueError(f"a driver runs one device: params must describe N = 1 device, got N = {params.n}")
        if not noise_std_c >= 0:
            raise ValueError(f"noise_std_c must be >= 0 degC, got {noise_std_c}")
        self.building = ThermostatFleet(params, mode)
        self.n_levels = self.building.n_levels
        self.weather = weather
        self.noise_std_c = noise_std_c
        self._clock = clock
        self._rng = rng
        self._t = float(clock())
        self._level = np.zeros(1, dtype=np.int64)

    def _advance(self) -> None:
        """Step the building from the previous call to ``clock()`` at the level held since."""
        now = float(self._clock())
        if now < self._t:
            raise ValueError(f"the clock went back from {self._t} s to {now} s; it must never decrease")
        n_steps = math.ceil((now - self._t) / self.max_step_s)
        dt = (now - self._t) / max(n_steps, 1)
        for k in range(n_steps):
            t_out = self.weather.outdoor_c(self._t + k * dt) + self.building.params.outdoor_offset
            self.building.step(self._level, t_out, dt)
        self._t = now

    def read(self) -> Reading:
        """The indoor temperature now, plus sensor noise."""
        self._advance()
        return Reading(indoor_c=float(sense_temperature(self.building.temp, self.noise_std_c, self._rng)[0]))

    def apply(self, level: int) -> None:
        """Run the heat pump at ``level`` from now on."""
        value = check_level(level, self.n_levels)
        self._advance()
        self._level[0] = value

    def close(self) -> None:
        """Switch the heat pump off from now on."""
        self.apply(0)


# --- Linux sysfs: DS18B20 + GPIO relay ------------------------------------------------------

_W1_DEVICES = "sys/bus/w1/devices"
_GPIO = "sys/class/gpio"
_DS18B20_FAMILY = "28-"
_POWER_ON_RESET_MC = 85_000  # the scratchpad's value before the first conversion
_RANGE_MC = (-55_000, 125_000)  # the DS18B20's specified measuring range
_EXPORT_WAIT_S = 2.0  # udev needs a moment to hand a freshly exported pin to the gpio group


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as e:
        raise DriverError(f"cannot read {path}: {e.strerror}; is the sensor still connected?") from None


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as e:
        raise DriverError(f"cannot write {text!r} to {path}: {e.strerror}") from None


def parse_millidegrees(path: Path, text: str) -> int:
    """The temperature in millidegrees C in a w1 ``w1_slave`` or ``temperature`` file's text.

    ``w1_slave`` holds two lines, the first ending in ``YES`` when the CRC is valid, the
    second ending in ``t=<millidegrees>``; ``temperature`` holds the number alone.
    :class:`DriverError` for a CRC failure or text of another form.
    """
    value = text.strip()
    if path.name == "w1_slave":
        lines = text.splitlines()
        if len(lines) != 2 or "t=" not in lines[1]:
            raise DriverError(f"{path}: expected two lines, the second ending in 't=<millidegrees>', got {text!r}")
        crc = lines[0].split()[-1:]
        if crc != ["YES"]:
            raise DriverError(f"{path}: the sensor's CRC check failed (first line {lines[0]!r} does not end in YES)")
        value = lines[1].rpartition("t=")[2].strip()
    try:
        return int(value)
    except ValueError:
        raise DriverError(f"{path}: {value!r} is not a temperature in millidegrees") from None


def check_millidegrees(path: Path, milli_c: int) -> float:
    """``milli_c`` in degC; :class:`DriverError` for the power-on value or outside the range."""
    if milli_c == _POWER_ON_RESET_MC:
        raise DriverError(
            f"{path}: 85.000 degC is the DS18B20's power-on value, not a measurement "
            "(the conversion did not run: check the 3.3 V supply and the pull-up)"
        )
    lo, hi = _RANGE_MC
    if not lo <= milli_c <= hi:
        raise DriverError(f"{path}: {milli_c / 1000:.3f} degC is outside the DS18B20's range [-55, 125] degC")
    return milli_c / 1000.0


class SysfsDriver:
    """A DS18B20 thermometer on the w1 bus and a relay on a GPIO pin, through Linux sysfs.

    The relay has two levels: 0 off, 1 on. ``gpio`` is the sysfs GPIO number; with
    ``active_low`` the relay is on when the pin is low. ``sensor_id`` (e.g.
    ``"28-0316a2795bff"``) picks a sensor under ``<root>/sys/bus/w1/devices``; without it, that
    folder must hold exactly one DS18B20. ``root`` prefixes every sysfs path (tests point it at
    a fake tree).

    Construction finds the sensor (its ``temperature`` file where the kernel has one, else
    ``w1_slave``), exports the pin if needed and makes it an output that is off, in one write
    (``direction`` = ``"low"`` or, active-low, ``"high"``, so the relay never clicks on).
    :meth:`close` switches the relay off and leaves the pin exported and driven: unexported, it
    would float and an active-low module could switch on.
    """

    n_levels = 2
    """off and on"""

    def __init__(self, gpio: int, *, active_low: bool = False, sensor_id: str | None = None, root: str | Path = "/"):
        if operator.index(gpio) < 0:
            raise ValueError(f"gpio must be a sysfs GPIO number >= 0, got {gpio}")
        self.root = Path(root)
        self.active_low = active_low
        self.sensor_file = self._find_sensor(sensor_id)
        self.gpio_dir = self.root / _GPIO / f"gpio{gpio}"
        self._export(gpio)
        _write_text(self.gpio_dir / "direction", "high" if active_low else "low")

    def _find_sensor(self, sensor_id: str | None) -> Path:
        devices = self.root / _W1_DEVICES
        found = sorted(p.name for p in devices.glob(f"{_DS18B20_FAMILY}*"))
        if sensor_id is None:
            if len(found) != 1:
                raise DriverError(
                    f"expected one DS18B20 ({_DS18B20_FAMILY}*) in {devices}, found {found or 'none'}; "
                    + ("pick one with sensor_id" if found else "is dtoverlay=w1-gpio set and the sensor wired?")
                )
            sensor_id = found[0]
        if "/" in sensor_id or not (devices / sensor_id).is_dir():
            raise DriverError(f"no 1-wire sensor {sensor_id!r} in {devices}; found {found or 'none'}")
        sensor = devices / sensor_id
        return sensor / "temperature" if (sensor / "temperature").exists() else sensor / "w1_slave"

    def _export(self, gpio: int) -> None:
        """Export the pin unless it is, then wait until udev made its files writable."""
        if self.gpio_dir.exists():
            return
        _write_text(self.root / _GPIO / "export", str(gpio))
        direction = self.gpio_dir / "direction"
        deadline = time.monotonic() + _EXPORT_WAIT_S
        while not os.access(direction, os.W_OK):
            if time.monotonic() > deadline:
                raise DriverError(f"exported GPIO {gpio}, but {direction} was not writable after {_EXPORT_WAIT_S} s")
            time.sleep(0.05)

    def read(self) -> Reading:
        """One temperature conversion (about 0.75 s)."""
        milli_c = parse_millidegrees(self.sensor_file, _read_text(self.sensor_file))
        return Reading(indoor_c=check_millidegrees(self.sensor_file, milli_c))

    def apply(self, level: int) -> None:
        """Relay on for ``level`` 1, off for 0."""
        on = check_level(level, self.n_levels) > 0
        _write_text(self.gpio_dir / "value", "1" if on != self.active_low else "0")

    def close(self) -> None:
        """Relay off."""
        self.apply(0)
