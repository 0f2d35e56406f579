"""The forecast service's error model: its statistics match the configuration, within the
sampling tolerance that theory gives for the number of issues drawn.

The configured model (``devices.forecast``): at lead ``l`` from its issue the error is
``bias + std(l) z`` with ``std(l)^2 = s0^2 + (s24^2 - s0^2) l / 24``; ``z`` has correlation
``phi^|dv|`` across valid hours (``phi = exp(-1h / lead_corr_time)``) and ``rho^|dk|`` across
issues at the same valid time. Read at a fixed lead, the errors of successive issues (``P``
hours apart in valid time) form an AR(1) with coefficient ``r = rho phi^P``, so with ``K``
issues (Bartlett): the sample mean has standard error ``std sqrt((1 + r) / (K (1 - r)))``, the
sample standard deviation ``std sqrt((1 + r^2) / (2 K (1 - r^2)))``, and a sample correlation
``c`` between two such series ``(1 - c^2) sqrt((1 + r^2) / (K (1 - r^2)))``. Every check allows
four standard errors.
"""

import math

import numpy as np
import pytest

from devices.config import ForecastConfig, SyntheticWeatherConfig
from devices.forecast import ServiceForecast, error_std
from devices.weather import SyntheticWeather

HOUR = 3600.0
K = 3000
CFG = ForecastConfig(
    issue_period="6h", bias_c=0.3, error_std_0h_c=1.0, error_std_24h_c=1.5, lead_corr_time="12h", issue_corr=0.8
)
PHI = math.exp(-1 / 12)
R = CFG.issue_corr * PHI**6


def weather(horizon_s: float) -> SyntheticWeather:
    calm = SyntheticWeatherConfig(noise_std_c=0.0)  # deterministic: the truth is known without the stream
    return SyntheticWeather(calm, 15, horizon_s + CFG.reach_s, np.random.default_rng(0))


@pytest.fixture(scope="module")
def errors() -> np.ndarray:
    """(K issues, 24 leads): forecast minus truth at each issue time, leads 1..24 h."""
    horizon = (K - 1) * CFG.issue_period
    truth = weather(horizon)
    forecast = ServiceForecast(CFG, truth, horizon, np.random.default_rng(1))
    out = np.empty((K, 24))
    for k in range(K):
        t = k * CFG.issue_period
        out[k] = forecast.ahead(t) - [truth.outdoor_c(t + HOUR * lead) for lead in CFG.lead_h]
    return out


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def corr_tolerance(c: float) -> float:
    return 4 * (1 - c * c) * math.sqrt((1 + R * R) / (K * (1 - R * R)))


def test_the_error_std_grows_as_configured():
    np.testing.assert_allclose(error_std(CFG, np.array([0.0, 24.0, 120.0])), [1.0, 1.5, math.sqrt(1 + 1.25 * 5)])


def test_the_mean_error_is_the_bias_at_every_lead(errors):
    std = error_std(CFG, np.arange(1, 25))
    tolerance = 4 * std * math.sqrt((1 + R) / (K * (1 - R)))
    assert (np.abs(errors.mean(axis=0) - CFG.bias_c) < tolerance).all(), errors.mean(axis=0)


def test_the_error_std_per_lead_is_the_configured_one(errors):
    std = error_std(CFG, np.arange(1, 25))
    tolerance = 4 * std * math.sqrt((1 + R * R) / (2 * K * (1 - R * R)))
    assert (np.abs(errors.std(axis=0) - std) < tolerance).all(), errors.std(axis=0) - std


@pytest.mark.parametrize("lag_h", [1, 6, 12])
def test_one_issues_errors_decorrelate_across_leads_at_the_configured_rate(errors, lag_h):
    expected = PHI**lag_h
    for lead in (1, 12, 24 - lag_h):
        c = corr(errors[:, lead - 1], errors[:, lead - 1 + lag_h])
        assert abs(c - expected) < corr_tolerance(expected), (lead, c, expected)


def test_consecutive_issues_errors_at_the_same_valid_time_correlate_by_issue_corr(errors):
    for lead in (1, 9, 18):  # issue k at lead + 6 h and issue k + 1 at lead: the same valid time
        c = corr(errors[:-1, lead + 5], errors[1:, lead - 1])
        assert abs(c - CFG.issue_corr) < corr_tolerance(CFG.issue_corr), (lead, c)


def test_between_issues_a_device_reads_the_latest_issue_at_its_valid_times():
    truth = weather(2 * 86400)
    forecast = ServiceForecast(CFG, truth, 2 * 86400, np.random.default_rng(1))
    at_issue, three_hours_on = forecast.ahead(12 * HOUR), forecast.ahead(15 * HOUR)
    np.testing.assert_array_equal(three_hours_on[:-3], at_issue[3:])  # the same issue, the same valid hours
    assert not np.array_equal(forecast.ahead(18 * HOUR)[:-6], at_issue[6:])  # a new issue


def test_a_forecast_without_error_is_the_truth_between_hours_too():
    perfect = CFG.model_copy(update={"bias_c": 0.0, "error_std_0h_c": 0.0, "error_std_24h_c": 0.0})
    truth = weather(86400)
    forecast = ServiceForecast(perfect, truth, 86400, np.random.default_rng(1))
    for t in (0.0, 7.5 * 60, 5.25 * HOUR, 86400.0):
        expected = [truth.outdoor_c(t + HOUR * lead) for lead in CFG.lead_h]
        np.testing.assert_allclose(forecast.ahead(t), expected, rtol=0, atol=1e-12)
