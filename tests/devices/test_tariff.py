"""Flat and time-of-use prices."""

import pytest
from pydantic import TypeAdapter

from devices.config import FlatTariffConfig, TariffConfig, TouTariffConfig
from devices.tariff import FlatTariff, TouTariff, make_tariff

H = 3600.0


def test_flat_price_never_changes():
    tariff = FlatTariff(FlatTariffConfig(price_per_kwh=0.3))
    assert {tariff.price(t) for t in (0.0, 7.5 * H, 1e7)} == {0.3}


@pytest.mark.parametrize(
    "hour, price",
    [
        (0.0, 0.1),
        (6.99, 0.1),
        (7.0, 0.2),
        (16.5, 0.2),
        (17.0, 0.4),
        (20.99, 0.4),
        (21.0, 0.1),
        (23.99, 0.1),
        (24.0 + 18.0, 0.4),
        (24.0 * 9 + 8.0, 0.2),
    ],
)
def test_tou_price_by_hour_of_day(hour, price):
    cfg = TouTariffConfig(
        periods=[
            {"start_h": 17, "end_h": 21, "price_per_kwh": 0.4},
            {"start_h": 0, "end_h": 7, "price_per_kwh": 0.1},
            {"start_h": 7, "end_h": 17, "price_per_kwh": 0.2},
            {"start_h": 21, "end_h": 24, "price_per_kwh": 0.1},
        ]
    )
    assert TouTariff(cfg).price(hour * H) == price


def test_make_tariff_follows_the_kind():
    flat = make_tariff(TypeAdapter(TariffConfig).validate_python({"kind": "flat"}))
    tou = make_tariff(
        TypeAdapter(TariffConfig).validate_python(
            {"kind": "tou", "periods": [{"start_h": 0, "end_h": 24, "price_per_kwh": 0.2}]}
        )
    )
    assert isinstance(flat, FlatTariff) and flat.price(0.0) == 0.25
    assert isinstance(tou, TouTariff) and tou.price(5 * H) == 0.2
