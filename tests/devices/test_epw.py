"""EPW files: round trip, leap years, every malformed case, and the weather built on them."""

import os

import numpy as np
import pytest

from devices.config import EpwWeatherConfig
from devices.weather import MAX_EPW_BYTES, EpwWeather, read_epw, write_epw
from fleet.errors import ConfigError

HEADER = (
    "LOCATION",
    "DESIGN CONDITIONS",
    "TYPICAL/EXTREME PERIODS",
    "GROUND TEMPERATURES",
    "HOLIDAYS/DAYLIGHT SAVINGS",
    "COMMENTS 1",
    "COMMENTS 2",
    "DATA PERIODS",
)


@pytest.fixture
def temps():
    return np.random.default_rng(0).uniform(-30.0, 40.0, 8760)


@pytest.fixture
def epw(tmp_path, temps):
    path = tmp_path / "site.epw"
    write_epw(path, temps, location="Testville")
    return path


def test_written_file_has_the_epw_structure(epw):
    lines = epw.read_text().splitlines()
    assert len(lines) == 8 + 8760
    assert all(line.startswith(key) for line, key in zip(lines, HEADER))
    assert "Testville" in lines[0]
    rows = [line.split(",") for line in lines[8:]]
    assert {len(r) for r in rows} == {35}
    assert rows[0][1:4] == ["1", "1", "1"] and rows[-1][1:4] == ["12", "31", "24"]
    assert rows[24 * 59][1:4] == ["3", "1", "1"]  # no February 29


def test_round_trip_to_one_decimal(epw, temps):
    back = read_epw(epw)
    assert back.shape == (8760,)
    assert np.max(np.abs(back - temps)) <= 0.05 + 1e-9
    write_epw(epw, back)
    np.testing.assert_array_equal(read_epw(epw), back)


def test_leap_year_drops_february_29(epw, temps):
    lines = epw.read_text().splitlines()
    feb29 = [f"2004,2,29,{h},0,?,{40 + h:.1f}" for h in range(1, 25)]
    march_first = 8 + 59 * 24
    epw.write_text("\n".join(lines[:march_first] + feb29 + lines[march_first:]) + "\n")
    np.testing.assert_array_equal(read_epw(epw), np.round(temps, 1))


def edit(path, line_no, new_line):
    lines = path.read_text().splitlines()
    lines[line_no - 1] = new_line
    path.write_text("\n".join(lines) + "\n")


def field7(path, line_no, value):
    fields = path.read_text().splitlines()[line_no - 1].split(",")
    fields[6] = value
    edit(path, line_no, ",".join(fields))


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda p: edit(p, 3, "SOMETHING ELSE,0"), ["line 3", "TYPICAL/EXTREME PERIODS"]),
        (lambda p: field7(p, 108, "abc"), ["line 108", "field 7", "'abc' is not a number"]),
        (lambda p: field7(p, 200, "9999"), ["line 200", "field 7", "missing"]),
        (lambda p: field7(p, 201, ""), ["line 201", "field 7", "not a number"]),
        (lambda p: edit(p, 300, "2001,1,13,4"), ["line 300", "at least 7", "found 4"]),
        (lambda p: field7(p, 400, "85.0"), ["line 400", "field 7", "outside", "[-90.0, 70.0]"]),
        (lambda p: p.write_text("\n".join(p.read_text().splitlines()[:5000])), ["line 5000", "8760", "truncated"]),
        (lambda p: p.write_text(""), ["line 1", "ends inside the EPW header"]),
    ],
)
def test_malformed_files_name_the_file_and_line(epw, damage, words):
    damage(epw)
    with pytest.raises(ConfigError) as info:
        read_epw(epw)
    msg = str(info.value)
    assert str(epw) in msg
    for w in words:
        assert w in msg


def test_missing_file_and_directory_are_named(tmp_path):
    with pytest.raises(ConfigError, match="nowhere.epw.*does not exist"):
        read_epw(tmp_path / "nowhere.epw")
    with pytest.raises(ConfigError, match=f"{tmp_path}.*is a directory"):
        read_epw(tmp_path)


def test_write_rejects_a_series_that_is_not_a_year():
    with pytest.raises(ValueError, match=r"\(8760,\)"):
        write_epw("unused.epw", np.zeros(24))


@pytest.fixture
def ramp(tmp_path):
    """An EPW rising steadily from -20 degC (first hour) to 30 degC (last hour)."""
    temps = np.round(np.linspace(-20.0, 30.0, 8760), 1)
    write_epw(tmp_path / "ramp.epw", temps)
    return temps


def test_row_k_is_the_hour_ending_at_k_plus_one(tmp_path, ramp):
    w = EpwWeather(EpwWeatherConfig(path="ramp.epw"), start_day=1, base_dir=tmp_path)
    assert w.outdoor_c(3600.0) == ramp[0]
    assert w.outdoor_c(2 * 3600.0) == ramp[1]
    assert w.outdoor_c(1.5 * 3600.0) == pytest.approx((ramp[0] + ramp[1]) / 2)


def test_wraps_at_the_end_of_the_year(tmp_path, ramp):
    w = EpwWeather(EpwWeatherConfig(path=str(tmp_path / "ramp.epw")), start_day=365, base_dir=tmp_path / "elsewhere")
    assert w.outdoor_c(24 * 3600.0) == ramp[-1]  # December 31, 24:00
    assert w.outdoor_c(24.5 * 3600.0) == pytest.approx((ramp[-1] + ramp[0]) / 2)
    assert w.outdoor_c(25 * 3600.0) == ramp[0]  # January 1, 01:00 of the next year
    assert w.outdoor_c((25 + 8760) * 3600.0) == ramp[0]


# --- what the weather path may name --------------------------------------------------------


@pytest.mark.timeout(30)  # a hang guard: reading a FIFO with no writer blocks for ever
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "pipe.epw")
    with pytest.raises(ConfigError, match="pipe.epw is a FIFO .*not a regular file"):
        read_epw(tmp_path / "pipe.epw")


def test_a_device_is_refused_before_a_byte_is_read():
    with pytest.raises(ConfigError, match="/dev/zero is a character device, not a regular file"):
        read_epw("/dev/zero")


def test_a_file_larger_than_any_epw_is_refused(tmp_path):
    big = tmp_path / "big.epw"
    with big.open("wb") as f:
        f.truncate(MAX_EPW_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ConfigError, match=f"big.epw is larger than {MAX_EPW_BYTES:,} bytes"):
        read_epw(big)


def test_an_error_never_quotes_a_file_that_is_not_epw(tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text("operator:$6$s3cretHash:19000:0:99999:7:::\n" * 20)
    with pytest.raises(ConfigError) as info:
        read_epw(secret)
    assert "line 1" in str(info.value) and "LOCATION" in str(info.value)
    assert "operator" not in str(info.value) and "s3cret" not in str(info.value)


def test_a_symbolic_link_to_an_epw_file_is_read(epw, temps, tmp_path):
    (tmp_path / "link.epw").symlink_to(epw)
    np.testing.assert_array_equal(read_epw(tmp_path / "link.epw"), read_epw(epw))
