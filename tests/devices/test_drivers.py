"""Drivers: the simulated building against its RC step response, the sysfs driver against a
fake sysfs tree laid out as the w1 and GPIO drivers of Linux lay it out."""

import math
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import simpy

from devices.building import DeviceParams
from devices.config import BuildingConfig, HvacConfig, OccupancyConfig, SyntheticWeatherConfig
from devices.drivers import DriverError, Reading, SimulatedThermostatDriver, SysfsDriver
from devices.weather import SyntheticWeather
from fleet.config import Constant

# --- simulated driver ------------------------------------------------------------------------

R, C, GAIN, COP, T0 = 4.0, 8.0, 0.2, 3.0, 20.0  # degC/kW, kWh/degC, kW, -, degC
T_OUT = -5.0  # constant weather -6 degC plus the device's offset of 1 degC


def one_device(**building) -> DeviceParams:
    """One house with the constants above (or distributions given), levels 0, 1, 2, 3 kW."""
    fixed = dict(
        resistance_c_per_kw=Constant(value=R),
        capacitance_kwh_per_c=Constant(value=C),
        internal_gain_kw=Constant(value=GAIN),
        initial_temp_c=Constant(value=T0),
        outdoor_offset_c=Constant(value=1.0),
    )
    hvac = HvacConfig(cop=Constant(value=COP), size_factor=Constant(value=1.0))
    return DeviceParams.draw(BuildingConfig(**(fixed | building)), hvac, OccupancyConfig(), 1, np.random.default_rng(0))


def weather(diurnal_c=0.0, days=2):
    cfg = SyntheticWeatherConfig(mean_c=-6.0, seasonal_amplitude_c=0.0, diurnal_amplitude_c=diurnal_c, noise_std_c=0.0)
    return SyntheticWeather(cfg, start_day=15, horizon_s=days * 86400.0, rng=np.random.default_rng(0))


@pytest.fixture
def env():
    return simpy.Environment()


def driver(env, params=None, noise_std_c=0.0, seed=0, diurnal_c=0.0):
    return SimulatedThermostatDriver(
        params or one_device(), "heat", weather(diurnal_c), lambda: env.now, np.random.default_rng(seed), noise_std_c
    )


def step_response(heat_kw: float, hours: float) -> float:
    """T(t) of C dT/dt = (T_out - T)/R + heat from T0."""
    t_inf = T_OUT + R * heat_kw
    return t_inf + (T0 - t_inf) * math.exp(-hours / (R * C))


def test_heating_follows_the_rc_step_response_and_idling_drifts(env):
    heating, idle = driver(env), driver(env)
    heating.apply(3)
    env.run(until=2 * 3600)
    assert heating.read().indoor_c == pytest.approx(step_response(COP * 3.0 + GAIN, 2.0), rel=1e-12)
    assert idle.read().indoor_c == pytest.approx(step_response(GAIN, 2.0), rel=1e-12)
    assert heating.read().indoor_c > T0 > idle.read().indoor_c


def test_level_holds_between_calls_and_changes_at_the_call(env):
    d = driver(env)
    d.apply(2)
    env.run(until=3600)
    d.apply(0)
    env.run(until=2 * 3600)
    t1 = step_response(COP * 2.0 + GAIN, 1.0)
    t_inf = T_OUT + R * GAIN
    assert d.read().indoor_c == pytest.approx(t_inf + (t1 - t_inf) * math.exp(-1 / (R * C)), rel=1e-12)


def test_physics_does_not_depend_on_how_often_the_agent_calls(env):
    """One call after 2 h of changing weather equals a call every 5 minutes."""
    rare, often = driver(env, diurnal_c=5.0), driver(env, diurnal_c=5.0)
    rare.apply(1)
    often.apply(1)
    for _ in range(24):
        env.run(until=env.now + 300)
        often.read()
    assert rare.read().indoor_c == pytest.approx(often.read().indoor_c, rel=1e-12)


def test_close_switches_the_heat_pump_off(env):
    d = driver(env)
    d.apply(3)
    d.close()
    env.run(until=3600)
    assert d.read().indoor_c == pytest.approx(step_response(GAIN, 1.0), rel=1e-12)


def test_same_seed_same_readings_other_seed_other_readings(env):
    params = one_device(resistance_c_per_kw={"dist": "uniform", "low": 3.0, "high": 6.0})
    drivers = [driver(env, params, noise_std_c=0.1, seed=s) for s in (7, 7, 8)]
    readings = []
    for d in drivers:
        d.apply(1)
    for _ in range(5):
        env.run(until=env.now + 60)
        readings.append([d.read().indoor_c for d in drivers])
    a, b, c = np.array(readings).T
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_simulated_driver_rejects_misuse(env):
    d = driver(env)
    assert d.n_levels == 4
    for level in (4, -1, 1.5):
        with pytest.raises(ValueError, match=r"\[0, 4\)"):
            d.apply(level)
    two = DeviceParams.draw(BuildingConfig(), HvacConfig(), OccupancyConfig(), 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="N = 1 device, got N = 2"):
        driver(env, two)


def test_a_clock_that_goes_back_is_an_error():
    times = iter([0.0, 10.0, 5.0])
    d = SimulatedThermostatDriver(one_device(), "heat", weather(), lambda: next(times), np.random.default_rng(0))
    d.read()
    with pytest.raises(ValueError, match="the clock went back from 10.0 s to 5.0 s"):
        d.read()


# --- sysfs driver ----------------------------------------------------------------------------

SENSOR = "28-0316a2795bff"
GPIO = 17


def w1_slave(milli_c, crc="YES"):
    """The two lines the w1_therm driver writes for one conversion."""
    return f"72 01 4b 46 7f ff 0e 10 57 : crc=57 {crc}\n72 01 4b 46 7f ff 0e 10 57 t={milli_c}\n"


W1_21375 = w1_slave(21375)


def add_sensor(root: Path, sensor=SENSOR, w1=W1_21375, temperature=None) -> Path:
    folder = root / "sys/bus/w1/devices" / sensor
    folder.mkdir(parents=True)
    (folder / "w1_slave").write_text(w1)
    if temperature is not None:
        (folder / "temperature").write_text(temperature)
    return folder


def add_gpio(root: Path, exported=True) -> Path:
    gpio = root / "sys/class/gpio"
    gpio.mkdir(parents=True)
    (gpio / "export").write_text("")
    if exported:
        (gpio / f"gpio{GPIO}").mkdir()
        (gpio / f"gpio{GPIO}/direction").write_text("in\n")
        (gpio / f"gpio{GPIO}/value").write_text("0\n")
    return gpio


@pytest.fixture
def sysfs(tmp_path):
    """A fake sysfs tree with one DS18B20 and an exported GPIO 17."""
    add_sensor(tmp_path)
    add_gpio(tmp_path)
    return tmp_path


@pytest.mark.parametrize("milli_c, expected", [("21375", 21.375), ("-1250", -1.25), ("0", 0.0), ("125000", 125.0)])
def test_reads_w1_slave(sysfs, milli_c, expected):
    (sysfs / "sys/bus/w1/devices" / SENSOR / "w1_slave").write_text(w1_slave(milli_c))
    assert SysfsDriver(GPIO, root=sysfs).read() == Reading(indoor_c=expected)


def test_prefers_the_temperature_file_of_newer_kernels(tmp_path):
    add_sensor(tmp_path, w1=w1_slave(99000), temperature="-10062\n")
    add_gpio(tmp_path)
    d = SysfsDriver(GPIO, root=tmp_path)
    assert d.sensor_file.name == "temperature"
    assert d.read().indoor_c == -10.062


@pytest.mark.parametrize(
    "w1, match",
    [
        (w1_slave(21375, crc="NO"), "CRC check failed"),
        (w1_slave(85000), "power-on value"),
        (w1_slave(125001), r"125.001 degC is outside the DS18B20's range \[-55, 125\]"),
        (w1_slave(-55001), "outside"),
        (w1_slave("2x375"), "'2x375' is not a temperature"),
        ("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n", "expected two lines"),
        ("", "expected two lines"),
    ],
)
def test_bad_readings_raise_and_the_next_good_one_reads(sysfs, w1, match):
    w1_file = sysfs / "sys/bus/w1/devices" / SENSOR / "w1_slave"
    d = SysfsDriver(GPIO, root=sysfs)
    w1_file.write_text(w1)
    with pytest.raises(DriverError, match=match) as info:
        d.read()
    assert str(w1_file) in str(info.value)
    w1_file.write_text(w1_slave(19000))
    assert d.read().indoor_c == 19.0


def test_power_on_value_in_the_temperature_file(tmp_path):
    add_sensor(tmp_path, temperature="85000\n")
    add_gpio(tmp_path)
    with pytest.raises(DriverError, match="temperature: 85.000 degC is the DS18B20's power-on value"):
        SysfsDriver(GPIO, root=tmp_path).read()


def test_missing_sensor(tmp_path):
    add_gpio(tmp_path)
    (tmp_path / "sys/bus/w1/devices").mkdir(parents=True)
    with pytest.raises(DriverError, match=r"expected one DS18B20 \(28-\*\) in .*found none; is dtoverlay=w1-gpio set"):
        SysfsDriver(GPIO, root=tmp_path)
    add_sensor(tmp_path)
    with pytest.raises(DriverError, match=r"no 1-wire sensor '28-000000000000' .*found \['28-0316a2795bff'\]"):
        SysfsDriver(GPIO, root=tmp_path, sensor_id="28-000000000000")


def test_several_sensors_need_a_sensor_id(sysfs):
    add_sensor(sysfs, "28-00000aaaaaaa", w1=w1_slave(18500))
    with pytest.raises(DriverError, match="found .*28-00000aaaaaaa.*28-0316a2795bff.*pick one with sensor_id"):
        SysfsDriver(GPIO, root=sysfs)
    assert SysfsDriver(GPIO, root=sysfs, sensor_id="28-00000aaaaaaa").read().indoor_c == 18.5


def test_sensor_unplugged_after_start(sysfs):
    d = SysfsDriver(GPIO, root=sysfs)
    (d.sensor_file).unlink()
    with pytest.raises(DriverError, match=f"cannot read {d.sensor_file}: No such file"):
        d.read()


def relay(sysfs: Path) -> tuple[str, str]:
    folder = sysfs / f"sys/class/gpio/gpio{GPIO}"
    return (folder / "direction").read_text(), (folder / "value").read_text()


def test_relay_starts_off_and_follows_the_level(sysfs):
    d = SysfsDriver(GPIO, root=sysfs)
    assert d.n_levels == 2
    assert relay(sysfs) == ("low", "0\n")  # "low": output, initially 0, in one write
    assert (sysfs / "sys/class/gpio/export").read_text() == ""  # already exported: left alone
    d.apply(1)
    assert relay(sysfs)[1] == "1"
    d.apply(np.int64(0))
    assert relay(sysfs)[1] == "0"
    d.apply(1)
    d.close()
    assert relay(sysfs)[1] == "0"


def test_active_low_relay(sysfs):
    d = SysfsDriver(GPIO, root=sysfs, active_low=True)
    assert relay(sysfs) == ("high", "0\n")  # output, initially high: off
    d.apply(1)
    assert relay(sysfs)[1] == "0"
    d.close()
    assert relay(sysfs)[1] == "1"


def test_exports_the_pin_and_waits_for_its_files(tmp_path):
    """The export file is a FIFO read by a fake kernel that creates the pin's files."""
    add_sensor(tmp_path)
    gpio = add_gpio(tmp_path, exported=False)
    (gpio / "export").unlink()
    os.mkfifo(gpio / "export")
    written = []

    def kernel():
        written.append((gpio / "export").read_text())
        (gpio / f"gpio{GPIO}").mkdir()
        for name in ("direction", "value"):
            (gpio / f"gpio{GPIO}" / name).write_text("")

    thread = threading.Thread(target=kernel)
    thread.start()
    SysfsDriver(GPIO, root=tmp_path).apply(1)
    thread.join()
    assert written == ["17"]
    assert relay(tmp_path) == ("low", "1")


def test_relay_write_failure_names_the_file(sysfs):
    d = SysfsDriver(GPIO, root=sysfs)
    value = sysfs / f"sys/class/gpio/gpio{GPIO}/value"
    value.unlink()
    value.mkdir()
    with pytest.raises(DriverError, match=f"cannot write '1' to {value}: Is a directory"):
        d.apply(1)


def test_sysfs_driver_rejects_bad_levels(sysfs):
    d = SysfsDriver(GPIO, root=sysfs)
    with pytest.raises(ValueError, match=r"level must lie in \[0, 2\), got 2"):
        d.apply(2)
    with pytest.raises(ValueError, match="got 'on'"):
        d.apply("on")
