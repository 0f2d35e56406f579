"""What every device observes of the weather ahead: ``Observation.outdoor_ahead``."""

import numpy as np
import pytest

from fleet.sim.engine import Simulation


def observe(scenario, t: float):
    """The Observation the scenario's controller gets at ``t``."""
    sim = Simulation(scenario)
    return sim.fleet.sense(*sim.sense(t))


def test_without_a_forecast_every_device_sees_persistence_exactly(scenario_factory):
    obs = observe(scenario_factory(), 0.0)
    assert obs.forecast_lead_h == tuple(float(h) for h in range(1, 25))
    assert obs.outdoor_ahead.shape == (100, 24)
    np.testing.assert_array_equal(obs.outdoor_ahead, np.repeat(obs.outdoor_c[:, None], 24, axis=1))


FORECAST = "{issue_period: 6h, bias_c: 0.3, error_std_0h_c: 1.0, error_std_24h_c: 1.5}"


def test_a_forecast_is_the_fleets_plus_each_devices_microclimate_offset(scenario_factory):
    scenario = scenario_factory(**{"weather.forecast": FORECAST})
    sim = Simulation(scenario)
    obs = sim.fleet.sense(*sim.sense(9 * 3600.0))
    offset = sim.world.params.outdoor_offset[:, None]
    fleet_wide = obs.outdoor_ahead - offset
    np.testing.assert_allclose(fleet_wide, np.tile(sim.world.forecast.ahead(9 * 3600.0), (100, 1)), atol=1e-12)
    assert not np.allclose(obs.outdoor_ahead, obs.outdoor_c[:, None])  # not persistence


def test_a_forecast_changes_no_other_draw_of_the_run(scenario_factory):
    """Its errors come from their own stream, and the synthetic weather drawn further ahead for it
    keeps its values over the horizon."""
    plain = Simulation(scenario_factory()).world
    with_forecast = Simulation(scenario_factory(**{"weather.forecast": FORECAST})).world
    times = np.arange(0, 2 * 86400 + 1, 600.0)
    np.testing.assert_array_equal(
        [plain.weather.outdoor_c(t) for t in times], [with_forecast.weather.outdoor_c(t) for t in times]
    )
    np.testing.assert_array_equal(plain.params.outdoor_offset, with_forecast.params.outdoor_offset)


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("weather.forecast.lead_h", "[1, 2, 300]", ["weather.forecast.lead_h", "beyond the 240 h"]),
        ("weather.forecast.lead_h", "[3, 2]", ["weather.forecast.lead_h", "increase"]),
        ("weather.forecast.lead_h", "[]", ["weather.forecast.lead_h", "at least one"]),
        ("weather.forecast.lead_h", "[0, 1]", ["weather.forecast.lead_h[0]", "greater than 0"]),
        ("weather.forecast.issue_period", "90min", ["weather.forecast.issue_period", "whole number of hours"]),
        ("weather.forecast.error_std_24h_c", "0.5", ["weather.forecast", "grows with lead time"]),
        ("weather.forecast.issue_corr", "1.0", ["weather.forecast.issue_corr", "less than 1"]),
        ("weather.forecast.bias_c", ".nan", ["weather.forecast.bias_c"]),
        ("weather.forecast.lead_corr_time", "0", ["weather.forecast.lead_corr_time"]),
        ("weather.forecast.horizon", "24h", ["weather.forecast.horizon", "unknown key"]),
    ],
)
def test_a_bad_forecast_exits_2_naming_the_field(key, value, words):
    from click.testing import CliRunner

    from fleet.cli import main

    result = CliRunner().invoke(main, ["validate", "thermostats-small-v1", "--set", f"{key}={value}"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.stderr, result.stderr


def test_an_epw_weather_keeps_its_forecast_when_its_path_is_resolved():
    from fleet.scenario import load_scenario

    scenario = load_scenario("thermostats-cold-v1", [f"weather.forecast={FORECAST}", "horizon=6h"])
    assert scenario.weather.forecast.bias_c == 0.3 and scenario.weather.path.startswith("/")
    obs = observe(scenario, 3600.0)
    assert obs.outdoor_ahead.shape == (100, 24) and not np.allclose(obs.outdoor_ahead, obs.outdoor_c[:, None])


def test_the_forecast_is_drawn_from_the_seed_alone_so_a_resumed_run_sees_the_same(scenario_factory):
    a, b, other = (
        Simulation(scenario_factory(seed=seed, **{"weather.forecast": FORECAST})).world.forecast for seed in (0, 0, 1)
    )
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, other.values)
