"""Build the simulated world of a scenario: devices, their parameters, links and neighbours."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from devices.building import DeviceParams
from devices.occupancy import Occupancy
from devices.tariff import Tariff, make_tariff
from devices.weather import Weather, make_weather
from fleet.learners.base import persistence, preview
from fleet.scenario import Scenario
from fleet.sim.rng import Streams
from fleet.sim.topology import Topology, build_topology


@dataclass(frozen=True)
class World:
    """Everything about the fleet that is drawn once at the start of a run."""

    site_names: list[str]
    site_of: np.ndarray
    """(N,) site index of each device."""
    device_names: list[str]
    feeder_kw: np.ndarray
    """(S,) feeder capacity per site."""
    profile_names: list[str]
    profile_of: np.ndarray
    """(N,) index into profile_names: each device's network class."""
    params: DeviceParams
    weather: Weather
    occupancy: Occupancy
    tariff: Tariff
    topology: Topology

    @property
    def n(self) -> int:
        return len(self.site_of)

    def conditions(self, t: float) -> dict:
        """What every device senses at ``t`` apart from its own temperature, feeder load and link:
        the :class:`~fleet.learners.base.Observation` fields ``outdoor_c``, ``band_lo``,
        ``band_hi``, ``occupied``, ``price`` (N,), ``hour``, the schedule preview and the forecast."""
        occupied = self.occupancy.occupied(t)
        lo, hi = self.occupancy.band_when(occupied)
        outdoor_c = self.weather.outdoor_c(t) + self.params.outdoor_offset
        return dict(
            outdoor_c=outdoor_c,
            band_lo=lo,
            band_hi=hi,
            occupied=occupied,
            price=np.full(self.n, self.tariff.price(t)),
            hour=(t / 3600.0) % 24.0,
            **preview(self.occupancy, self.tariff, t, self.n),
            **persistence(outdoor_c),
        )


def _network_classes(scenario: Scenario, names: list[str], rng: np.random.Generator) -> np.ndarray:
    """Each device's class: exact shares per site (largest remainder), shuffled within the site."""
    parts = []
    for site in scenario.fleet.sites:
        counts = site.class_counts
        labels = np.repeat([names.index(c) for c in counts], list(counts.values()))
        parts.append(rng.permutation(labels))
    return np.concatenate(parts)


def build_world(scenario: Scenario, streams: Streams) -> World:
    """Draw the fleet of ``scenario`` from its named random streams."""
    sites = scenario.fleet.sites
    n = scenario.n_devices
    site_of = np.repeat(np.arange(len(sites)), [s.devices for s in sites])
    device_names = scenario.fleet.device_names
    profile_names = sorted(scenario.network.profiles)
    fleet = scenario.fleet
    params = DeviceParams.draw(fleet.building, fleet.hvac, fleet.occupancy, n, streams.numpy("devices"))
    starts = np.cumsum([0] + [s.devices for s in sites])
    groups = (
        [np.arange(a, b) for a, b in zip(starts[:-1], starts[1:])]
        if scenario.topology.scope == "site"
        else [np.arange(n)]
    )
    return World(
        site_names=[s.name for s in sites],
        site_of=site_of,
        device_names=device_names,
        feeder_kw=np.array([s.feeder_kw for s in sites]),
        profile_names=profile_names,
        profile_of=_network_classes(scenario, profile_names, streams.numpy("network-classes")),
        params=params,
        weather=make_weather(
            scenario.weather, scenario.start_day, scenario.horizon, streams.numpy("weather"), Path.cwd()
        ),
        occupancy=Occupancy(fleet.occupancy, params.occupancy_shift_h),
        tariff=make_tariff(scenario.tariff),
        topology=build_topology(scenario.topology, groups, streams.numpy("topology")),
    )
