"""One device's view of a scenario: what an edge agent needs to run that device alone.

The fleet is drawn exactly as the simulator draws it (:func:`fleet.sim.world.build_world` with
the scenario's seed), so a board named ``d00012`` has the building parameters, occupancy shift,
site, feeder and topology neighbours that ``d00012`` has in simulation. The learner runs with
N = 1, so its neighbours get *local* sender slots: the local topology has receiver 0 hearing
senders 1..k, where slot ``s`` is the ``s``-th neighbour in fleet order; a centralized learner's
cloud is endpoint 1 (its ``n_devices``).

Time: the agent's clock counts seconds from the scenario's start (midnight of ``start_day``).
Occupancy and tariffs repeat daily; a synthetic weather series covers only the horizon (plus a
day), so past the horizon rounded up to whole days it repeats from the start
(:class:`LoopedWeather`); an EPW year repeats by itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from devices.building import DeviceParams
from devices.occupancy import Occupancy
from devices.weather import SyntheticWeather, Weather
from fleet.errors import ConfigError
from fleet.mqtt.topics import device_topic
from fleet.scenario import Scenario
from fleet.sim.engine import COLLECTOR_NAME, COLLECTOR_SITE
from fleet.sim.market import clearing_topic
from fleet.sim.meter import meter_topic
from fleet.sim.rng import Streams
from fleet.sim.topology import Topology
from fleet.sim.world import World, build_world

DAY_S = 86400.0


class LoopedWeather:
    """A weather model repeated every ``period_s`` seconds, for clocks that outrun its series."""

    def __init__(self, weather: Weather, period_s: float) -> None:
        self.weather, self.period_s = weather, period_s

    def outdoor_c(self, t_s: float) -> float:
        return self.weather.outdoor_c(t_s % self.period_s)


@dataclass(frozen=True)
class Sender:
    """Who publishes on a topic the agent subscribes to."""

    kind: str
    """Message kind of the topic ("params", "cmd", "meter", "clearing")."""
    index: int | None
    """Fleet index of the publisher (the collector and the auctioneers are N, the meter of site s is
    N + 1 + s), written in the codec header; ``None`` when any sender may use the topic (the device's
    own ``cmd``)."""
    slot: int
    """The sender's index in the N = 1 learner's numbering (neighbours 1..k, the cloud 1)."""


@dataclass(frozen=True)
class DeviceView:
    """One device of a scenario, with what its agent needs (see the module docstring)."""

    scenario: Scenario
    world: World
    index: int
    """Fleet index of the device (the sender id in its messages)."""
    neighbours: np.ndarray
    """(k,) fleet indices of the topology neighbours, in fleet order (local slots 1..k)."""
    params: DeviceParams
    """This device's physical parameters, N = 1."""
    occupancy: Occupancy
    """This device's schedule, N = 1."""
    weather: Weather
    """The scenario's weather, usable at any time of the agent's clock."""

    @property
    def name(self) -> str:
        return self.world.device_names[self.index]

    @property
    def site(self) -> str:
        return self.world.site_names[self.world.site_of[self.index]]

    @property
    def feeder_kw(self) -> float:
        """Capacity of the device's feeder, kW."""
        return float(self.world.feeder_kw[self.world.site_of[self.index]])

    @property
    def local_topology(self) -> Topology:
        """Receiver 0 hears senders 1..k (the neighbours)."""
        k = len(self.neighbours)
        return Topology(k + 1, np.zeros(k, np.int64), np.arange(1, k + 1, dtype=np.int64))

    def topic(self, kind: str) -> str:
        """The device's own topic of ``kind``."""
        return device_topic(self.site, self.name, kind)

    def subscriptions(self, exchange: str, market: bool = False) -> dict[str, Sender]:
        """Topics the agent subscribes to for a learner of this ``exchange``, as the simulator
        subscribes the device: neighbours' params ("neighbours"), the cloud's params ("cloud"),
        its site's meter ("meter"), its site auctioneer's clearings (``market``), and always the
        device's own ``cmd``."""
        w = self.world
        site = int(w.site_of[self.index])
        topics = {self.topic("cmd"): Sender("cmd", None, 0)}
        if market:
            topics[clearing_topic(self.site)] = Sender("clearing", w.n, 1)
        if exchange == "meter":
            topics[meter_topic(self.site)] = Sender("meter", w.n + 1 + site, 1)
        if exchange == "neighbours":
            for slot, j in enumerate(self.neighbours.tolist(), start=1):
                topics[device_topic(w.site_names[w.site_of[j]], w.device_names[j], "params")] = Sender(
                    "params", j, slot
                )
        elif exchange == "cloud":
            topics[device_topic(COLLECTOR_SITE, COLLECTOR_NAME, "params")] = Sender("params", w.n, 1)
        return topics


def _one(params: DeviceParams, i: int) -> DeviceParams:
    return DeviceParams(**{f.name: getattr(params, f.name)[i : i + 1].copy() for f in fields(params)})


def _unknown_device(name: str, names: list[str], scenario: Scenario) -> ConfigError:
    shown = ", ".join(names[:3] + (["...", names[-1]] if len(names) > 3 else []))
    return ConfigError(f"device {name!r} is not in scenario {scenario.name!r}; its {len(names)} devices are {shown}")


def device_view(scenario: Scenario, name: str) -> DeviceView:
    """The view of device ``name`` of ``scenario``; :class:`ConfigError` naming valid ones if it has none."""
    world = build_world(scenario, Streams(scenario.seed))
    try:
        i = world.device_names.index(name)
    except ValueError:
        raise _unknown_device(name, world.device_names, scenario) from None
    weather = world.weather
    if isinstance(weather, SyntheticWeather):
        weather = LoopedWeather(weather, math.ceil(scenario.horizon / DAY_S) * DAY_S)
    params = _one(world.params, i)
    return DeviceView(
        scenario=scenario,
        world=world,
        index=i,
        neighbours=np.sort(world.topology.neighbours(i)),
        params=params,
        occupancy=Occupancy(scenario.fleet.occupancy, params.occupancy_shift_h),
        weather=weather,
    )
