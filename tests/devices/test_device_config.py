"""Validation of the device configuration: bad values are rejected with a message that says why."""

import pytest
from pydantic import TypeAdapter, ValidationError

from devices.config import (
    BuildingConfig,
    EpwWeatherConfig,
    HvacConfig,
    OccupancyConfig,
    RuleBasedConfig,
    SensorConfig,
    SyntheticWeatherConfig,
    TariffConfig,
    TouTariffConfig,
    WeatherConfig,
)
from fleet.config import format_validation_error


def problem(model, **values) -> str:
    """The user-facing message for ``model(**values)``, which must be invalid."""
    with pytest.raises(ValidationError) as info:
        model.model_validate(values)
    return str(format_validation_error(info.value, "scenario.yaml"))


@pytest.mark.parametrize(
    "model", [BuildingConfig, HvacConfig, SensorConfig, SyntheticWeatherConfig, OccupancyConfig, RuleBasedConfig]
)
def test_defaults_are_valid(model):
    model()


def test_capacitance_reaching_negative_values_is_rejected():
    msg = problem(BuildingConfig, capacitance_kwh_per_c={"dist": "uniform", "low": -1, "high": 2})
    assert "capacitance_kwh_per_c" in msg and "(0, inf]" in msg and "[-1.0, 2.0]" in msg


def test_unclipped_normal_resistance_is_rejected_with_a_hint():
    msg = problem(BuildingConfig, resistance_c_per_kw={"dist": "normal", "mean": 4, "std": 1})
    assert "resistance_c_per_kw" in msg and "clip bounds" in msg


def test_a_bare_number_is_a_constant():
    assert BuildingConfig(capacitance_kwh_per_c=6).capacitance_kwh_per_c.value == 6


@pytest.mark.parametrize(
    "levels, words",
    [
        ((1.0, 2.0), "first level must be 0"),
        ((0.0, 2.0, 2.0), "strictly increasing"),
        ((0.0, 3.0, 1.0), "strictly increasing"),
        ((0.0,), "at least 2"),
        ((0.0, float("inf")), "finite"),
    ],
)
def test_bad_power_levels_are_rejected(levels, words):
    msg = problem(HvacConfig, power_levels_kw=levels)
    assert "power_levels_kw" in msg and words in msg


def test_unknown_mode_and_unknown_keys_are_rejected():
    assert "mode" in problem(HvacConfig, mode="defrost")
    msg = problem(BuildingConfig, resistence_c_per_kw=4.0)
    assert "resistence_c_per_kw" in msg and "unknown key" in msg


@pytest.mark.parametrize("field", ["occupied_band_c", "unoccupied_band_c"])
@pytest.mark.parametrize("band", [(23.0, 20.0), (21.0, 21.0)])
def test_band_low_must_be_below_high(field, band):
    msg = problem(OccupancyConfig, **{field: band})
    assert field in msg and "must be below" in msg


@pytest.mark.parametrize(
    "hours, words",
    [
        (((0, 8), (7, 9)), "overlap on hours [7.0, 8.0)"),
        (((9, 9),), "start before it ends"),
        (((18, 25),), "less than or equal to 24"),
    ],
)
def test_bad_occupied_hours_are_rejected(hours, words):
    assert words in problem(OccupancyConfig, occupied_hours=hours)


def tou(*periods):
    return [{"start_h": s, "end_h": e, "price_per_kwh": p} for s, e, p in periods]


def test_tou_periods_in_any_order_that_tile_the_day_are_accepted():
    cfg = TouTariffConfig(periods=tou((17, 24, 0.4), (0, 7, 0.1), (7, 17, 0.2)))
    assert len(cfg.periods) == 3


@pytest.mark.parametrize(
    "periods, words",
    [
        (tou((0, 7, 0.1), (8, 24, 0.3)), "hours [7.0, 8.0) are not covered"),
        (tou((1, 24, 0.1)), "hours [0.0, 1.0) are not covered"),
        (tou((0, 20, 0.1)), "hours [20.0, 24) are not covered"),
        (tou((0, 10, 0.1), (9, 24, 0.3)), "hours [9.0, 10.0) are covered by more than one period"),
        (tou((22, 6, 0.1)), "split a period across midnight"),
        ([], "at least one period"),
    ],
)
def test_tou_gaps_and_overlaps_are_rejected_naming_the_hours(periods, words):
    msg = problem(TouTariffConfig, periods=periods)
    assert "periods" in msg and words in msg


def test_tagged_unions_pick_the_model():
    weather = TypeAdapter(WeatherConfig).validate_python({"source": "epw", "path": "x.epw"})
    assert isinstance(weather, EpwWeatherConfig)
    synthetic = TypeAdapter(WeatherConfig).validate_python({"source": "synthetic", "noise_corr_time": "3h"})
    assert synthetic.noise_corr_time == 3 * 3600
    assert TypeAdapter(TariffConfig).validate_python({"kind": "flat"}).price_per_kwh == 0.25


@pytest.mark.parametrize(
    "model, values",
    [
        (SensorConfig, {"temp_noise_std_c": -0.1}),
        (RuleBasedConfig, {"deadband_c": 0.0}),
        (SyntheticWeatherConfig, {"noise_corr_time": 0}),
        (SyntheticWeatherConfig, {"noise_std_c": float("nan")}),
    ],
)
def test_out_of_range_scalars_are_rejected(model, values):
    assert next(iter(values)) in problem(model, **values)
