"""Device models for a fleet of thermostats: vectorized building physics, weather,
occupancy, tariffs, sensors, the rule-based baseline controller, and drivers that run one
thermostat (simulated, or real hardware through Linux sysfs).

Every state array has a leading device axis of length N; randomness comes only from the
``numpy.random.Generator`` passed in. This package imports nothing from the learners or the
simulator (only :mod:`fleet.config` and :mod:`fleet.errors`).
"""

from devices.building import DeviceParams, ThermostatFleet, rc_step
from devices.drivers import Driver, DriverError, Reading, SimulatedThermostatDriver, SysfsDriver
from devices.occupancy import Occupancy, comfort_violation_c
from devices.sensors import sense_temperature
from devices.tariff import Tariff, make_tariff
from devices.thermostat import RuleBasedThermostat
from devices.weather import Weather, make_weather, read_epw, write_epw

__all__ = [
    "DeviceParams",
    "Driver",
    "DriverError",
    "Occupancy",
    "Reading",
    "RuleBasedThermostat",
    "SimulatedThermostatDriver",
    "SysfsDriver",
    "Tariff",
    "ThermostatFleet",
    "Weather",
    "comfort_violation_c",
    "make_tariff",
    "make_weather",
    "rc_step",
    "read_epw",
    "sense_temperature",
    "write_epw",
]
