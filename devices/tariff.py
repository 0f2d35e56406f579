"""Electricity price signals, per kWh in the tariff's ``currency``, as a function of time
``t_s`` (seconds since the simulation start at 00:00 local time)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from devices.config import FlatTariffConfig, TariffConfig, TouTariffConfig


class Tariff(Protocol):
    """The energy price that every device of the fleet pays."""

    def price(self, t_s: float) -> float:
        """Price at ``t_s``, per kWh."""
        ...


class FlatTariff:
    """The same price at every hour."""

    def __init__(self, cfg: FlatTariffConfig) -> None:
        self.price_per_kwh = cfg.price_per_kwh

    def price(self, t_s: float) -> float:
        """Price at ``t_s``, per kWh."""
        return self.price_per_kwh


class TouTariff:
    """Time-of-use price: the period of the day that contains the hour ``(t_s / 3600) mod 24``."""

    def __init__(self, cfg: TouTariffConfig) -> None:
        periods = sorted(cfg.periods, key=lambda p: p.start_h)
        self._starts = np.array([p.start_h for p in periods])  # (P,)
        self._prices = np.array([p.price_per_kwh for p in periods])  # (P,)

    def price(self, t_s: float) -> float:
        """Price at ``t_s``, per kWh."""
        hour = (t_s / 3600.0) % 24.0
        return float(self._prices[np.searchsorted(self._starts, hour, side="right") - 1])


def make_tariff(cfg: TariffConfig) -> Tariff:
    """The tariff that ``cfg`` describes."""
    if isinstance(cfg, FlatTariffConfig):
        return FlatTariff(cfg)
    return TouTariff(cfg)
