"""The feeder meter of a site on real boards (``fleet meter``, issue 17).

It runs as a :class:`~fleet.edge.site.SiteRunner` role: every control period it publishes the site's
reading ``[site index, load kW, capacity kW, devices] (4,)`` float32 on ``fleet/<site>/meter/meter``
(:func:`~fleet.sim.meter.meter_topic`), at QoS 0 and from endpoint ``N + 1 + s``, as the simulated
meter does (:mod:`fleet.sim.meter`); a device reading the meter (``cooperative-v1``) takes it, and a
lost reading leaves it with the newest it has (a stale one). In a mixed fleet (``fleet run --realtime``,
:mod:`fleet.sim.bridge`) the bridge publishes the readings of every site with a real device itself: a
``fleet meter`` there would collide with it, and the run refuses to start while one is online.

Where the load comes from is a :class:`LoadSource`. On a real site it is the feeder's meter: a driver
that reads it (Modbus, a smart meter's P1 port, the grid operator's API...) needs only ``load_kw(t)``,
the load now in kW (None when it cannot be read: no reading goes out). Until one is written,
:class:`TelemetryLoad` stands in: the sum of the power that the site's agents report in their telemetry
(``workloads.telemetry`` must be enabled), each device's latest report counted while it is less than two
telemetry periods old (a device that went quiet counts 0). It is the feeder's load only as far as the
houses' heat pumps are all of it and every device reports; it lags by up to a telemetry period.
Telemetry is checked as every board checks what it receives (:mod:`fleet.edge.inbound`): a payload that
does not decode or is not ``[temperature, kW, band low, band high, occupied]`` with a kW between 0 and
the fleet's largest level is ``malformed``, a topic of no device of the site or a header naming another
sender ``foreign``; all are dropped and counted.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from fleet.edge.counters import Counters
from fleet.edge.inbound import InboundFilter
from fleet.edge.site import Publication, SiteView
from fleet.edge.view import Sender
from fleet.errors import ConfigError
from fleet.mqtt.codec import DType, Kind, Message, encode
from fleet.mqtt.topics import site_filter
from fleet.mqtt.transport import Received
from fleet.sim.meter import METER_NAME, meter_topic, readings


class LoadSource(Protocol):
    """Where a meter's load comes from."""

    topics: tuple[str, ...]
    """MQTT topic filters it needs (none for a driver of a real meter)."""

    def offer(self, received: Received, t: float) -> None:
        """A message of its topics, received at clock time ``t``."""

    def load_kw(self, t: float) -> float | None:
        """The feeder's load at ``t`` in kW, or None when it cannot be read now."""


class TelemetryLoad:
    """The stand-in meter: the sum of the site's latest reported powers (module docstring)."""

    def __init__(self, site: SiteView, counters: Counters) -> None:
        telemetry = site.scenario.workloads.telemetry
        if not telemetry.enabled:
            raise ConfigError(
                "workloads.telemetry.enabled: without telemetry the meter's stand-in has no power to sum; enable "
                "it, or give the meter a driver of the feeder's real meter (fleet.edge.meter.LoadSource)"
            )
        self.max_age = 2 * telemetry.period
        self.max_kw = float(np.max(site.world.params.levels_kw))
        self.topics = (site_filter(site.name, "telemetry"),)
        senders = {topic: Sender("telemetry", i, i) for topic, i in site.device_topics("telemetry").items()}
        self.inbound = InboundFilter(senders, {"telemetry": self._layout}, counters)
        self.reported: dict[int, tuple[float, float]] = {}
        """Device -> (kW, clock time it arrived) of its latest telemetry."""

    def _layout(self, message: Message) -> bool:
        values = message.arrays[0] if len(message.arrays) == 1 else np.zeros(0)
        return values.shape == (5,) and bool(0 <= values[1] <= self.max_kw)

    def offer(self, received: Received, t: float) -> None:
        accepted = self.inbound.check(received)
        if accepted is not None:
            self.reported[accepted.sender.index] = (float(accepted.message.arrays[0][1]), t)

    def load_kw(self, t: float) -> float | None:
        fresh = [kw for kw, at in self.reported.values() if t - at < self.max_age]
        return float(sum(fresh)) if fresh else None


class Meter:
    """The feeder meter of ``site``, reading ``source`` (default: :class:`TelemetryLoad`)."""

    name = METER_NAME

    def __init__(self, site: SiteView, source: LoadSource | None = None) -> None:
        w = site.world
        self.site, self.index = site, w.n + 1 + site.index
        self.period, self.offset = site.scenario.control_period, 0.0
        self.counters = Counters()
        self.source = source if source is not None else TelemetryLoad(site, self.counters)
        self.topics = tuple(self.source.topics)
        self.seq = self.unread = 0
        """Messages published; control periods without a load to publish."""
        self.load: float | None = None
        """The last load published, kW."""

    def offer(self, received: Received, t: float) -> None:
        self.source.offer(received, t)

    def step(self, t: float) -> Publication | None:
        """The reading of the load now (none when the source has none)."""
        self.load = self.source.load_kw(t)
        if self.load is None:
            self.unread += 1
            return None
        values = readings(
            np.array([self.site.index]),
            np.array([self.load]),
            np.array([self.site.feeder_kw]),
            np.array([len(self.site.devices)]),
        )
        self.seq += 1
        return Publication(
            meter_topic(self.site.name), encode(Kind.METER, self.index, self.seq, t, [values[0]], DType.FLOAT32), 0
        )

    def status(self) -> str:
        c, load = self.counters, "none" if self.load is None else f"{self.load:.2f}kW"
        return f"readings={self.seq} load={load} unread={self.unread} malformed={c.malformed} foreign={c.unexpected}"
