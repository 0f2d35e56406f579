"""The runner of a site role: a process of a site that is not a device, on the wall clock, over a real broker.

A site of a real fleet may need two such roles beside its boards, each a small process of its own:

- its feeder market's auctioneer (:mod:`fleet.edge.auctioneer`, ``fleet auctioneer``) for a scenario
  whose auction learner trades (issue 16);
- its feeder meter (:mod:`fleet.edge.meter`, ``fleet meter``) for a learner that reads it (issue 17).

A role says what it listens to, what it does every ``period`` and what its status line shows
(:class:`SiteRole`); :class:`SiteRunner` does the rest, as :class:`~fleet.edge.agent.EdgeAgent` does for
a device: SimPy's real-time clock (``factor = 1 / speedup``, not strict; with ``epoch``, the shared clock
of :mod:`fleet.sim.realtime`), the transport with its will, reconnections, the status lines. Processes:

- ``step`` at every ``k * period + offset`` of the clock: drain what arrived, then :meth:`SiteRole.step`
  and publish what it returns, at once or never (a clearing or a reading that cannot go now is worth
  nothing later: counted ``unsent``);
- ``poll`` about every wall second (at most every period): drain the inbox into the role (a message
  whose handling raises is logged, counted ``failed`` and dropped), notice (re)connections (publish the
  birth status), stop when asked (:meth:`SiteRunner.stop`);
- ``status`` lines every ``status_every`` wall seconds (also shown in ``systemctl status``), and
  ``watchdog`` pings when systemd asks for them: a role runs under ``deploy/fleet-agent.service``
  with its ``ExecStart`` changed, as an agent does (:mod:`fleet.edge.watchdog`).

Status: ``fleet/<site>/<role>/status`` is retained, ``[1.0]`` after every connection and ``[0.0]`` as
the will or at a clean stop, both with the UNIX second the process started as their sequence number
(a role keeps no state on disk, so a later start has a larger number, as a device's session does).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import simpy.rt

from fleet.edge import watchdog
from fleet.edge.counters import Counters
from fleet.errors import ConfigError, TransportError
from fleet.mqtt.codec import DType, Kind, encode
from fleet.mqtt.topics import device_topic
from fleet.mqtt.transport import Received, Transport, Will
from fleet.scenario import Scenario
from fleet.sim import realtime
from fleet.sim.rng import Streams
from fleet.sim.world import World, build_world

log = logging.getLogger("fleet.edge")

TransportFactory = Callable[..., Transport]
"""``factory(client_id, *, will, session_expiry) -> Transport``, e.g. a ``functools.partial`` of
:class:`~fleet.mqtt.paho_transport.PahoTransport` or :class:`~fleet.mqtt.memory.MemoryTransport`."""

POLL_WALL_S = 1.0
"""Longest wall time between two drains of the inbox (and checks for a stop request)."""


@dataclass(frozen=True)
class RunOptions:
    """How a process on the wall clock runs (durations in seconds)."""

    speedup: float = 1.0
    """Clock seconds per wall-clock second."""
    duration: float | None = None
    """Stop after this long on the clock, from start or resume (None: until stopped)."""
    status_every: float = 60.0
    """Wall time between status lines."""
    session_expiry: int = 86400
    """How long the broker keeps the session (subscriptions, queued QoS 1 messages) while away."""
    connect_wait: float = 2.0
    """Wall time to wait for the broker at start; after it the process runs anyway and connects later."""
    epoch: float | None = None
    """UNIX time at which the shared clock of a mixed fleet reads scenario time 0
    (:mod:`fleet.sim.realtime`); None: the process's own clock, from 0 at its first start."""

    def __post_init__(self) -> None:
        for name in ("speedup", "status_every", "connect_wait"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0) and not (name == "connect_wait" and value == 0):
                raise ConfigError(f"{name.replace('_', '-')} must be a positive number, got {value!r}")
        if self.duration is not None and not (math.isfinite(self.duration) and self.duration > 0):
            raise ConfigError(f"duration must be positive, got {self.duration!r}")
        realtime.check_epoch(self.epoch)


def start_clock(env: simpy.rt.RealtimeEnvironment, options: RunOptions) -> None:
    """Start ``env`` on the wall clock now: from its time, or pinned to the shared clock of ``options.epoch``."""
    if options.epoch is None:
        env.sync()
    else:
        realtime.pin(env, options.epoch, options.speedup)


def end_after(env: simpy.rt.RealtimeEnvironment, duration: float, stop: simpy.Event):
    """A process that triggers ``stop`` after ``duration`` (unless something else did)."""
    yield env.timeout(duration)
    if not stop.triggered:
        stop.succeed()


class Presence:
    """A process's connection as its polls see it: (re)connections logged and counted, the birth status
    announced after each, and a refusal of the credentials kept (:attr:`refused`)."""

    def __init__(
        self, name: str, transport: Transport, counters: Counters, announce: Callable[[], bool], lost: str
    ) -> None:
        """``announce()`` publishes the birth status, False when it could not go yet; ``lost`` is logged when
        the connection goes."""
        self.name, self.transport, self.counters, self.announce, self.lost = name, transport, counters, announce, lost
        self.refused: TransportError | None = None
        self._was_up = self._birth_due = False

    def check(self) -> bool:
        """Notice a (re)connection and announce it; False once the broker refused the credentials for good."""
        up = self.transport.connected
        if not up:
            try:
                self.transport.connect(0)
            except TransportError as e:
                log.error("%s", e)
                self.refused = e
                return False
        if up != self._was_up:
            log.info("%s: %s", self.name, "connected to the broker" if up else self.lost)
            self.counters.connects += up
            self._birth_due = self._was_up = up
        if self._birth_due:
            self._birth_due = not self.announce()
        return True


@dataclass(frozen=True)
class SiteView:
    """One site of a scenario, drawn as the simulator draws the fleet."""

    scenario: Scenario
    world: World
    index: int
    """The site's index in ``world.site_names``."""

    @property
    def name(self) -> str:
        return self.world.site_names[self.index]

    @property
    def devices(self) -> np.ndarray:
        """(D,) fleet indices of the site's devices."""
        return np.flatnonzero(self.world.site_of == self.index)

    @property
    def feeder_kw(self) -> float:
        return float(self.world.feeder_kw[self.index])

    def device_topics(self, kind: str) -> dict[str, int]:
        """Each device's topic of ``kind`` -> its fleet index."""
        w = self.world
        return {device_topic(self.name, w.device_names[i], kind): int(i) for i in self.devices}


def site_view(scenario: Scenario, name: str) -> SiteView:
    """The view of site ``name``; :class:`ConfigError` naming the scenario's sites if it has none."""
    world = build_world(scenario, Streams(scenario.seed))
    if name not in world.site_names:
        raise ConfigError(
            f"--site {name!r} is not a site of scenario {scenario.name!r}; its sites are {', '.join(world.site_names)}"
        )
    return SiteView(scenario, world, world.site_names.index(name))


def role_identity(role: str, site: str) -> str:
    """The MQTT identity (user name, certificate name, client id) of ``role`` at ``site``."""
    return f"{role}-{site}"


@dataclass(frozen=True)
class Publication:
    """A message a role publishes."""

    topic: str
    payload: bytes
    qos: int


class SiteRole(Protocol):
    """What a site process does; :class:`SiteRunner` runs it."""

    name: str
    """The device-name level of its topics: ``fleet/<site>/<name>/<kind>``."""
    site: SiteView
    index: int
    """Its sender id in the codec's header."""
    period: float
    offset: float
    """It steps at every ``k * period + offset`` of the clock."""
    topics: tuple[str, ...]
    """The topic filters it subscribes to."""
    counters: Counters

    def offer(self, received: Received, t: float) -> None:
        """Take one received message (checking it: nothing may raise on bad input) at clock time ``t``."""

    def step(self, t: float) -> Publication | None:
        """Its periodic work at ``t``; what to publish, if anything."""

    def status(self) -> str:
        """Its part of the status line."""


class SiteRunner:
    """Runs ``role`` until stopped; see the module docstring. ``on_status`` gets the status lines."""

    def __init__(
        self,
        role: SiteRole,
        transport_factory: TransportFactory,
        options: RunOptions = RunOptions(),
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        self.role, self.options, self.on_status = role, options, on_status
        self.identity = role_identity(role.name, role.site.name)
        self.session = int(time.time())
        t0 = 0.0 if options.epoch is None else max(0.0, realtime.shared_time(options.epoch, options.speedup))
        self.env = simpy.rt.RealtimeEnvironment(initial_time=t0, factor=1.0 / options.speedup, strict=False)
        self.status_topic = device_topic(role.site.name, role.name, "status")
        self.transport = transport_factory(
            self.identity, will=Will(self.status_topic, self._status(False)), session_expiry=options.session_expiry
        )
        self.unsent = 0
        """Publications that could not go when due (the broker away, or refusing them)."""
        self.presence = Presence(self.identity, self.transport, role.counters, self._announce, "lost the broker")
        self._stop_requested = False

    def stop(self) -> None:
        """Ask the runner to stop at its next poll; safe from a signal handler or another thread."""
        self._stop_requested = True

    def run(self) -> Counters:
        """Connect (or not: the broker may come later), run until stopped or ``duration`` is over, then
        disconnect. Returns the role's counters; raises :class:`TransportError` when the broker refuses
        the credentials."""
        o, period = self.options, self.role.period
        self._stop = self.env.event()
        procs = {
            "step": (period, self._step),
            "poll": (min(period, POLL_WALL_S * o.speedup), self._poll),
            "status": (o.status_every * o.speedup, self._status_line),
        }
        if watchdog_s := watchdog.watchdog_interval():
            procs["watchdog"] = (watchdog_s / 2 * o.speedup, lambda: watchdog.tell(watchdog.ping))
        for name, (every, step) in procs.items():
            self.env.process(self._periodic(name, every, step))
        if o.duration is not None:
            self.env.process(end_after(self.env, o.duration, self._stop))
        try:
            self._start()
            self.env.run(until=self._stop)
        finally:
            self._shutdown()
        if self.presence.refused is not None:
            raise self.presence.refused
        return self.role.counters

    def _start(self) -> None:
        for topic in self.role.topics:
            self.transport.subscribe(topic, qos=1)
        up = self.transport.connect(self.options.connect_wait)
        log.info(
            "%s: listening on %s%s",
            self.identity,
            ", ".join(self.role.topics) or "no topic",
            "" if up else "; the broker is not reachable yet: running anyway, retrying",
        )
        watchdog.tell(watchdog.ready)
        start_clock(self.env, self.options)

    def _periodic(self, name: str, period: float, step: Callable[[], None]):
        """``step()`` every ``period``: the role's steps on its grid of ``k * period + offset``, the others now."""
        now, offset = self.env.now, self.role.offset
        due = math.ceil((now - offset) / period) * period + offset if name == "step" else now
        yield self.env.timeout(max(due - now, 0.0))
        while True:
            step()
            yield self.env.timeout(period)

    def _shutdown(self) -> None:
        """Offline status (when connected), a last status line, disconnect."""
        if self.transport.connected:
            try:
                self.transport.publish(self.status_topic, self._status(False), qos=1, retain=True).wait(2.0)
            except TransportError as e:
                log.debug("could not publish the offline status: %s", e)
        self._status_line()
        self.transport.close()
        watchdog.tell(watchdog.stopping)

    # --- work ------------------------------------------------------------------------------------

    def _step(self) -> None:
        self._receive()
        publication = self.role.step(self.env.now)
        if publication is None:
            return
        try:
            self.transport.publish(publication.topic, publication.payload, publication.qos)
        except TransportError as e:
            self.unsent += 1
            log.debug("could not publish on %s: %s", publication.topic, e)
            return
        self.role.counters.sent += 1
        self.role.counters.sent_bytes += len(publication.payload)

    def _poll(self) -> None:
        self._receive()
        if not self.presence.check():
            self._stop_requested = True
        if self._stop_requested and not self._stop.triggered:
            self._stop.succeed()

    def _receive(self) -> None:
        """Hand what the transport received to the role, each message on its own: a failure drops it, no more."""
        for received in self.transport.drain():
            try:
                self.role.offer(received, realtime.clock_at(self.env, received.arrived_at, self.options.speedup))
            except Exception as e:  # noqa: BLE001 - no message may stop the role
                self.role.counters.failed += 1
                log.warning(
                    "dropped a message on %s whose handling failed: %s: %s", received.topic, type(e).__name__, e
                )

    def _announce(self) -> bool:
        try:
            self.transport.publish(self.status_topic, self._status(True), qos=1, retain=True)
        except TransportError as e:
            log.debug("could not publish the online status yet: %s", e)
            return False
        return True

    def _status(self, online: bool) -> bytes:
        flag = np.array([1.0 if online else 0.0], np.float32)
        return encode(Kind.STATUS, self.role.index, self.session, self.env.now, [flag], DType.FLOAT32)

    # --- reporting -------------------------------------------------------------------------------

    def status_line(self) -> str:
        """One line: clock, the role's own figures, messages, connection."""
        c = self.role.counters
        return (
            f"{self.identity} t={self.env.now / 3600:.2f}h {self.role.status()} received={c.received} "
            f"dropped={c.dropped} sent={c.sent} unsent={self.unsent} "
            f"connected={'yes' if self.transport.connected else 'no'}"
        )

    def _status_line(self) -> None:
        line = self.status_line()
        if self.on_status is not None:
            self.on_status(line)
        watchdog.tell(lambda: watchdog.status(line))
