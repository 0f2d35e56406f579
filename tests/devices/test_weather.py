"""Synthetic weather against the climate it is configured with, and the weather factory."""

import math

import numpy as np
import pytest

from devices.config import EpwWeatherConfig, SyntheticWeatherConfig
from devices.weather import EpwWeather, SyntheticWeather, make_weather, write_epw

DAY = 86400.0


def weather(horizon_days=365, start_day=1, seed=0, **cfg):
    return SyntheticWeather(SyntheticWeatherConfig(**cfg), start_day, horizon_days * DAY, np.random.default_rng(seed))


def test_annual_mean_is_the_configured_mean():
    w = weather(mean_c=3.0)
    hourly = [w.outdoor_c(h * 3600.0) for h in range(8760)]
    assert np.mean(hourly) == pytest.approx(3.0, abs=0.3)


def test_daily_minimum_near_five_and_maximum_near_fifteen():
    w = weather(horizon_days=1, mean_c=0.0, seasonal_amplitude_c=0.0, diurnal_amplitude_c=4.0, noise_std_c=0.0)
    minutes = np.arange(24 * 60)
    temps = np.array([w.outdoor_c(m * 60.0) for m in minutes])
    assert minutes[temps.argmin()] / 60 == pytest.approx(5.0) and temps.min() == pytest.approx(-4.0)
    assert minutes[temps.argmax()] / 60 == pytest.approx(15.0) and temps.max() == pytest.approx(4.0)
    assert temps.mean() == pytest.approx(0.0, abs=0.05)


def test_coldest_day_is_mid_january_and_warmest_mid_july():
    w = weather(mean_c=3.0, seasonal_amplitude_c=10.0, diurnal_amplitude_c=0.0, noise_std_c=0.0)
    daily = np.array([np.mean([w.outdoor_c((d * 24 + h) * 3600.0) for h in range(24)]) for d in range(365)])
    assert daily.argmin() + 1 == 15 and daily.min() == pytest.approx(-7.0, abs=0.01)
    assert abs(daily.argmax() + 1 - (15 + 365 / 2)) <= 1 and daily.max() == pytest.approx(13.0, abs=0.01)


def test_start_day_moves_the_calendar():
    w = weather(horizon_days=3, start_day=15, seasonal_amplitude_c=10.0, diurnal_amplitude_c=0.0, noise_std_c=0.0)
    assert w.outdoor_c(12 * 3600.0) == pytest.approx(3.0 - 10.0)


def test_noise_has_the_ou_std_and_autocorrelation():
    tau_h = 6.0
    w = weather(
        horizon_days=20 * 365,
        seed=1,
        mean_c=0.0,
        seasonal_amplitude_c=0.0,
        diurnal_amplitude_c=0.0,
        noise_std_c=1.5,
        noise_corr_time=tau_h * 3600,
    )
    x = w.hourly_c
    assert x.std() == pytest.approx(1.5, rel=0.03)
    for lag in (1, 6):
        assert np.corrcoef(x[:-lag], x[lag:])[0, 1] == pytest.approx(math.exp(-lag / tau_h), abs=0.02)


def test_interpolates_linearly_between_hours():
    w = weather(horizon_days=2)
    assert w.outdoor_c(5400.0) == pytest.approx((w.outdoor_c(3600.0) + w.outdoor_c(7200.0)) / 2)


def test_covers_the_horizon_plus_a_day_and_no_more():
    w = weather(horizon_days=1)
    w.outdoor_c(2 * DAY)
    for t_s in (-1.0, 2 * DAY + 3600.0):
        with pytest.raises(ValueError, match="horizon"):
            w.outdoor_c(t_s)


def test_same_seed_same_weather_and_no_noise_draws_nothing():
    np.testing.assert_array_equal(weather(30, seed=4).hourly_c, weather(30, seed=4).hourly_c)
    assert not np.array_equal(weather(30, seed=4).hourly_c, weather(30, seed=5).hourly_c)
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state
    SyntheticWeather(SyntheticWeatherConfig(noise_std_c=0.0), 1, DAY, rng)
    assert rng.bit_generator.state == before


def test_start_day_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="start_day"):
        weather(horizon_days=1, start_day=366)


def test_make_weather_builds_either_model(tmp_path):
    write_epw(tmp_path / "site.epw", np.full(8760, 7.5))
    rng = np.random.default_rng(0)
    epw = make_weather(EpwWeatherConfig(path="site.epw"), 1, DAY, rng, base_dir=tmp_path)
    assert isinstance(epw, EpwWeather) and epw.outdoor_c(3 * 3600.0) == 7.5
    assert isinstance(make_weather(SyntheticWeatherConfig(), 1, DAY, rng, base_dir=tmp_path), SyntheticWeather)
