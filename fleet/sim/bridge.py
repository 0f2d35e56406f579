"""Mixed fleets: a real-time simulation whose learner messages go through a real MQTT broker.

``fleet run SCENARIO --realtime --broker URL`` runs the :class:`~fleet.sim.engine.Simulation` on
the shared wall clock of :mod:`fleet.sim.realtime` and attaches a :class:`Bridge`: one MQTT
client (a :class:`~fleet.mqtt.transport.Transport`, normally paho) that

- publishes the parameters of every *simulated* device on that device's topic
  ``fleet/<site>/<device>/params``, encoded by the same codec, with the device's fleet index as
  the header's sender and a sequence number per device (what a board of that device would send);
  they go out through an :class:`~fleet.edge.uplink.Uplink` and its
  :class:`~fleet.edge.outbox.Outbox`, so while the broker is away only the newest parameters of
  each device wait, as on a board;
- subscribes to the params topic of every device that a simulated device listens to, real
  *and* simulated: all learner traffic, simulated-to-simulated included, goes through the
  broker. What arrives is checked by the boards' :class:`~fleet.edge.inbound.InboundFilter`
  (topic, codec, header sender, layout, QoS 1 duplicates) and handed, at each learning step, to
  the learner's inbox for every simulated neighbour of its sender, stamped with its arrival time
  on the simulation's clock (as a board stamps what it receives).

Devices listed in ``fleet.external`` are real agents (``fleet agent --epoch``): the simulation
never publishes for them (they are masked out of the batched learner's publications) and does
not deliver to their rows.

For a learner that reads its feeder's meter (``cooperative-v1``, :func:`fleet.sim.meter.reads_meter`)
the bridge is also the meter of every site with an external device: every control period it
publishes that site's reading on :func:`~fleet.sim.meter.meter_topic`, the very bytes of the
simulation's meter (:class:`~fleet.sim.meter.SiteMeters`: codec kind ``meter``, sender ``N + 1 + s``,
one sequence number per site), at QoS 0, now or never (a reading that waited would be stale), as
``fleet meter`` (:mod:`fleet.edge.meter`) does on a site of boards only; a board reads it unchanged.
The simulated devices keep their readings in the model, as their telemetry: a reading goes one way,
from the site to its devices, so routing it through the broker would change nothing but its delay,
and the network model (the meter on the collector's link) stays what a study of the meter measures.
Two meters of one site would give its boards two loads under one sender, so a site's ``fleet meter``
must not run beside the bridge: the bridge reads the retained status of each such meter
(``fleet/<site>/meter/status``) when it connects and refuses to start while one says it is online
(:class:`~fleet.errors.ConfigError`); one that comes online during the run is logged and counted
(``meter_conflicts`` in summary.json's ``mixed`` section). Sites without an external device get no
reading on the broker.

For a learner that trades in a feeder market (``auction-v1`` with ``learner.params.market.period``,
:func:`fleet.sim.market.trades`) the bridge is likewise the auctioneer of every site with an external
device. It subscribes to the ``bid`` topic of each external device and checks what arrives as ``fleet
auctioneer`` (:mod:`fleet.edge.auctioneer`) does: a payload that does not decode or is not ``[valuation,
kW]`` (``malformed``), a header naming another sender (``foreign``), a QoS 1 message seen before
(``duplicates``), then :func:`fleet.sim.market.screen` (``invalid``, ``late``, ``repeated``). At the
simulation's clearing of a round (``window`` after it began, on the simulation's clock) the boards' bids
of that round join the simulated devices' in the same auction (:meth:`~fleet.sim.market.SimMarket.clear`),
and the bridge publishes each such site's part of the outcome on :func:`~fleet.sim.market.clearing_topic`:
the bytes ``fleet auctioneer`` would send (:meth:`~fleet.sim.market.Cleared.site_message`: sender N, one
sequence number a round, the clearing time), at the market's QoS, now or never, so a board's ``fleet agent``
applies it unchanged. The external devices' stand-ins do not bid (they are masked out of the market's
bids, as out of the learner's publications), so no device bids twice. The simulated devices keep their
bids and their clearing in the model: the auction is the same one, so they hear the same outcome, and
their bids and the clearing keep crossing the network model (their links and the collector's), whose
bytes, losses and delays are what a market study measures. A ``fleet auctioneer`` of such a site is
refused and counted as a ``fleet meter`` is (``fleet/<site>/auctioneer/status``, ``market_conflicts``):
two would give the boards two clearings a round under one sender. summary.json's ``mixed`` section
lists ``market_sites`` with ``market_bids`` (boards' bids that joined a round), ``market_clearings``,
``market_unsent`` and ``market_dropped`` (the boards' bids dropped, per reason); the market's metrics
(``market/dropped_*``) count the simulated devices' bids only.

Approximations, stated where they matter:

- The simulated network model (latency, loss, bandwidth, broker capacity) does not apply to
  learner messages: their delays and losses are those of the real broker and loopback/LAN.
  Telemetry, status and the consensus workload of simulated devices stay in the model.
  ``comm`` in summary.json therefore leaves out learner messages; the ``mixed`` section counts
  what the bridge sent and received.
- The external devices keep a row in the batched simulation (a simulated stand-in: building,
  controller, rewards). Their fleet KPIs and metrics include that stand-in, not the board; the
  board's own results are in its status lines and checkpoint. The feeder load that the bridge's
  meter reads is the simulated feeder's, so it sums the stand-ins' power, not the boards'. In the
  market, a board's grant does not bind its stand-in (which did not bid and controls on its own), so
  the simulated feeder's load may differ from what the clearing sold.
- A board's bid crosses the real broker with its real delay: one that has not arrived when the
  simulation clears its round (``window`` after it began) is late, dropped and counted at the next
  clearing, as ``fleet auctioneer`` drops it. A bid of the next round that arrives before a clearing
  (the simulation's clock behind the shared one) is kept for that round.
- Simulated churn and link cuts still decide which simulated devices publish and receive.
- Only dense parameter messages (``learner.params.comm.topk: 1``) and learners that exchange
  with their neighbours, read the meter or do not communicate run in real time; a centralized
  learner is refused. A real-time run writes no checkpoints and cannot be resumed.
- If the simulation cannot keep up with ``speedup``, its clock lags the shared one (the
  RealtimeEnvironment is not strict) and catches up when it can.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fleet.edge.auctioneer import BidInbox
from fleet.edge.counters import Counters
from fleet.edge.inbound import InboundFilter, params_layout
from fleet.edge.outbox import Outbox
from fleet.edge.uplink import Uplink
from fleet.edge.view import Sender
from fleet.errors import ConfigError, TransportError, WireError
from fleet.learners.base import Deliveries
from fleet.mqtt.codec import Kind, decode, encode_batch
from fleet.mqtt.topics import device_topic
from fleet.mqtt.transport import Received, Transport, accepted
from fleet.sim import realtime
from fleet.sim.market import AUCTIONEER_NAME, DROPS, Cleared, SimMarket, clearing_topic, screen, tally
from fleet.sim.meter import METER_NAME, meter_topic

log = logging.getLogger("fleet.bridge")

BRIDGE_CLIENT_ID = "bridge"
"""MQTT client id (and, with ``fleet deploy provision``, the user name) of the bridge."""
OUTBOX_MAX_MESSAGES, OUTBOX_MAX_BYTES = 100_000, 64 * 2**20
RETAINED_WAIT_S = 0.5
"""Wall seconds to wait, after the broker acknowledged the subscription, for the site roles' retained statuses
(they follow the acknowledgement on the same connection)."""


class Duty(NamedTuple):
    """A site role (:mod:`fleet.edge.site`) that the bridge takes over at the sites with an external device."""

    command: str
    """The role's process on real boards."""
    conflicts: str
    """The summary key counting the online statuses of that process heard during the run."""
    what: str
    """What the bridge does in its place."""
    twice: str
    """What two of them would give the boards under one sender."""


DUTIES = {
    METER_NAME: Duty("fleet meter", "meter_conflicts", "publishes the feeder readings", "two loads"),
    AUCTIONEER_NAME: Duty("fleet auctioneer", "market_conflicts", "clears the feeder market", "two clearings a round"),
}
"""The site roles the bridge can take over, by the device-name level of their topics."""

Inbox = tuple[str, Deliveries]
"""``(kind, deliveries)`` for ``learner.inbox``."""


@dataclass(frozen=True)
class RealtimeOptions:
    """How a real-time run meets the real world."""

    transport: Callable[[str], Transport]
    """``transport(client_id)``: a new, unconnected client of the broker."""
    speedup: float = 1.0
    """Scenario seconds per wall second (the agents must use the same)."""
    epoch: float | None = None
    """UNIX time of scenario time 0 (see :mod:`fleet.sim.realtime`); None: when the run starts."""
    connect_wait: float = 5.0
    """Wall seconds to wait for the broker before giving up (nothing is written then)."""
    broker: str = ""
    """The broker as shown in summary.json (no credentials)."""


class Bridge:
    """The simulated devices' MQTT client; see the module docstring.

    ``external`` (N,) bool marks the real devices; ``n_params`` is P of a params message; with
    ``meters`` (the learner reads the feeder meter) the bridge is the meter of the sites with a real device,
    with a ``market`` (the learner trades) their auctioneer.
    """

    def __init__(
        self,
        world,
        external: np.ndarray,
        n_params: int,
        qos: int,
        transport: Transport,
        meters: bool,
        market: SimMarket | None,
    ) -> None:
        self.world, self.external, self.qos, self.transport = world, external, qos, transport
        n, topo = world.n, world.topology
        self.topic_of = [
            device_topic(world.site_names[world.site_of[j]], world.device_names[j], "params") for j in range(n)
        ]
        simulated_edge = ~external[topo.receiver]
        self.listeners = [topo.receiver[simulated_edge & (topo.sender == j)] for j in range(n)]
        """(k,) simulated devices that hear device j."""
        topics = {self.topic_of[j]: Sender("params", j, j) for j in range(n) if len(self.listeners[j])}
        self.counters = Counters()
        self.inbound = InboundFilter(topics, {"params": params_layout(n_params)}, self.counters)
        self.seq = np.zeros(n, np.int64)
        self.deliveries = {"deliveries_from_external": 0, "deliveries_from_simulated": 0}
        """Messages handed to simulated receivers, by kind of sender (one per receiver)."""
        boarded = np.unique(world.site_of[external])  # the sites with an external device
        self.meter_sites = boarded if meters else boarded[:0]
        """(M,) the sites whose readings the bridge publishes: those with an external device."""
        self.meter = {"meter_readings": 0, "meter_unsent": 0}
        """Readings published; readings the transport could not take when due."""
        self.conflicts = {duty.conflicts: 0 for duty in DUTIES.values()}
        """Online statuses of a ``fleet meter`` or ``fleet auctioneer`` of a site the bridge serves, heard during
        the run."""
        self._init_market(market, boarded)
        self.roles = {
            device_topic(world.site_names[s], role, "status"): role
            for role, sites in ((METER_NAME, self.meter_sites), (AUCTIONEER_NAME, self.market_sites))
            for s in sites
        }
        """Status topic of the ``fleet meter`` or ``fleet auctioneer`` of each site the bridge serves -> its role."""
        self.speedup, self.epoch, self.broker = 1.0, 0.0, ""
        """The shared clock and where the broker is (set by :func:`attach`)."""
        self._folder = tempfile.TemporaryDirectory(prefix="fleet-bridge-")
        self.outbox = Outbox(Path(self._folder.name) / "outbox.sqlite", OUTBOX_MAX_MESSAGES, OUTBOX_MAX_BYTES)
        self.uplink = Uplink(transport, self.outbox, self.counters)
        self.held: list[Received] = []
        """Learner messages that arrived while the market took its bids, for :meth:`arrived`."""

    def _init_market(self, market: SimMarket | None, boarded: np.ndarray) -> None:
        """The bridge as the auctioneer of the sites ``boarded`` (those with an external device), when the learner
        trades."""
        w = self.world
        boards = np.flatnonzero(self.external) if market is not None else np.zeros(0, np.int64)
        self.market_sites = boarded if market is not None else boarded[:0]
        """(A,) the sites whose feeder market the bridge clears: those with an external device."""
        self.market_qos, self.max_kw = (market.cfg.qos, market.max_kw) if market is not None else (0, 0.0)
        period = market.cfg.period if market is not None else 1.0  # without a market there is no bid to hold
        topics = {device_topic(w.site_names[w.site_of[j]], w.device_names[j], "bid"): int(j) for j in boards}
        self.bid_counters = Counters()
        """The checks of the boards' bids (``malformed``, ``unexpected``: a header naming another sender)."""
        self.bid_inbox = BidInbox(topics, period, self.bid_counters)
        self.market = {"market_bids": 0, "market_clearings": 0, "market_unsent": 0}
        """The boards' bids that joined a round; clearings published; clearings the transport could not take
        when due."""
        self.bids_dropped = dict.fromkeys(DROPS, 0)
        """The boards' bids that passed the checks but were none of the round that took them, per reason."""
        self.clearing_seq = 0

    def start(self, timeout: float) -> None:
        """Connect, check that no ``fleet meter`` or ``fleet auctioneer`` of the sites it serves is online,
        subscribe; :class:`TransportError` if the broker is not there within ``timeout`` s, :class:`ConfigError` if
        such a process is."""
        try:
            if not self.transport.connect(timeout):
                raise TransportError(
                    f"the broker did not accept the bridge's connection within {timeout:g} s; is it running and "
                    "reachable?"
                )
            self._check_roles(timeout)
            for topic in [*self.inbound.topics, *self.bid_inbox.inbound.topics]:
                self.transport.subscribe(topic, qos=1)
        except BaseException:
            self.close(wait=0)
            raise
        self.counters.connects += 1

    def _check_roles(self, timeout: float) -> None:
        """Subscribe to the status of the site roles the bridge takes over; :class:`ConfigError` naming those
        whose retained status says they are online."""
        answers = [self.transport.subscribe(topic, qos=1) for topic in self.roles]
        for topic, delivery in zip(self.roles, answers):
            code = delivery.wait(timeout)
            if not accepted(code):
                answer = "no answer" if code is None else f"reason code {code}"
                raise TransportError(
                    f"the broker did not let the bridge subscribe to {topic} ({answer}); the bridge reads "
                    "fleet/# (fleet deploy provision grants it)"
                )
        if not answers:
            return
        time.sleep(RETAINED_WAIT_S)
        online = sorted({r.topic for r in self.transport.drain() if r.topic in self.roles and _online(r)})
        if online:
            duty = DUTIES[self.roles[online[0]]]
            topics = ", ".join(t for t in online if self.roles[t] == self.roles[online[0]])
            raise ConfigError(
                f"a {duty.command} says it is online ({topics}), at a site where this mixed run {duty.what} itself "
                f"(its devices in fleet.external are real): the two would give the boards {duty.twice} under one "
                f"sender. Stop that {duty.command} (one that crashed reads online until the broker publishes its "
                "will), or run without that site's devices in fleet.external"
            )

    def publish_readings(self, rows: np.ndarray) -> None:
        """Send the readings of :attr:`meter_sites` out of every site's encoded readings ``rows`` (S, L),
        in site order (:meth:`fleet.sim.meter.SiteMeters.outgoing`), at QoS 0, now or never."""
        for s in self.meter_sites.tolist():
            sent = self.uplink.send_now(meter_topic(self.world.site_names[s]), rows[s].tobytes(), qos=0)
            self.meter["meter_readings" if sent else "meter_unsent"] += 1

    def publish(self, t: float, kind: str, pub) -> None:
        """Send a learner's publication (dense params of simulated devices) at scenario time ``t``."""
        sender = pub.sender
        if len(sender) == 0:
            return
        self.seq[sender] += 1
        rows = encode_batch(Kind[kind.upper()], sender, self.seq[sender], t, pub.arrays, pub.dtypes)
        for j, row in zip(sender.tolist(), rows):
            self.uplink.send(self.topic_of[j], row.tobytes(), kind=kind, qos=self.qos)

    def arrived(self, env, reachable: np.ndarray) -> list[Inbox]:
        """What arrived since the last call, checked, for the simulated neighbours of each sender
        that are ``reachable`` (N,), stamped with its arrival on ``env``'s clock; also sends what
        waits in the outbox."""
        self.uplink.flush()
        groups: dict[tuple, list[tuple[np.ndarray, int, tuple[np.ndarray, ...], float]]] = {}
        received_all, self.held = [*self.held, *self._drain()], []
        for received in received_all:
            got = self.inbound.check(received)
            if got is None:
                continue
            j = got.sender.index
            receivers = self.listeners[j][reachable[self.listeners[j]]]
            self.deliveries["deliveries_from_external" if self.external[j] else "deliveries_from_simulated"] += len(
                receivers
            )
            stamp = realtime.clock_at(env, got.arrived_at, self.speedup)
            arrays = got.message.arrays
            groups.setdefault(tuple(a.shape for a in arrays), []).append((receivers, j, arrays, stamp))
        return [self._batch(items) for items in groups.values()]

    def _drain(self) -> list[Received]:
        """Take what the transport received: the site roles' statuses and the boards' bids are handled here, the
        rest (learner messages) is returned."""
        rest = []
        for received in self.transport.drain():
            if received.topic in self.roles:
                self._role_status(received)
            elif received.topic in self.bid_inbox.inbound.topics:
                self.bid_inbox.offer(received)
            else:
                rest.append(received)
        return rest

    def _role_status(self, received: Received) -> None:
        """A status of a ``fleet meter`` or ``fleet auctioneer`` of a site the bridge serves, heard during the run:
        one saying online is a conflict."""
        if _online(received):
            duty = DUTIES[self.roles[received.topic]]
            self.conflicts[duty.conflicts] += 1
            log.error(
                "a %s came online on %s while this mixed run %s of that site: its boards now hear both; stop it",
                duty.command,
                received.topic,
                duty.what,
            )

    def bids(self, round_t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The boards' bids for the market round that began at ``round_t``, checked as ``fleet auctioneer`` checks
        them (the others counted), ``(sender (B,), bids (B, 2), published at (B,))`` for
        :meth:`fleet.sim.market.SimMarket.clear`."""
        self.uplink.flush()
        self.held += self._drain()
        sender, bids, stamp = self.bid_inbox.take(round_t)
        reason = screen(sender, bids, stamp, round_t, self.world.n, self.max_kw)
        for why, count in tally(reason).items():
            self.bids_dropped[why] += count
        keep = reason < 0
        self.market["market_bids"] += int(keep.sum())
        return sender[keep], bids[keep], stamp[keep]

    def publish_clearing(self, t: float, cleared: Cleared) -> None:
        """Send each served site its part of the round ``cleared`` at ``t``, the bytes its ``fleet auctioneer``
        would send (:meth:`fleet.sim.market.Cleared.site_message`), on :func:`~fleet.sim.market.clearing_topic`
        at the market's QoS, now or never."""
        self.clearing_seq += 1
        w = self.world
        for s in self.market_sites.tolist():
            payload = cleared.site_message(w.site_of, s, self.clearing_seq, t)
            sent = self.uplink.send_now(clearing_topic(w.site_names[s]), payload, qos=self.market_qos)
            self.market["market_clearings" if sent else "market_unsent"] += 1

    @staticmethod
    def _batch(items: list[tuple[np.ndarray, int, tuple[np.ndarray, ...], float]]) -> Inbox:
        """Messages of one layout, each held once, with one delivery per (receiver, message)."""
        count = [len(receivers) for receivers, _, _, _ in items]
        arrays = [np.stack([a[i] for _, _, a, _ in items]) for i in range(len(items[0][2]))]
        receiver = np.concatenate([receivers for receivers, _, _, _ in items])
        sender = np.repeat([j for _, j, _, _ in items], count)
        msg = np.repeat(np.arange(len(items)), count)
        return "params", Deliveries(receiver, sender, np.repeat([t for _, _, _, t in items], count), msg, arrays)

    def summary(self) -> dict:
        names = [self.world.device_names[i] for i in np.flatnonzero(self.external)]
        c = self.counters
        return {
            "external": names,
            "speedup": self.speedup,
            "epoch": self.epoch,
            "broker": self.broker,
            **self.deliveries,
            "meter_sites": [self.world.site_names[s] for s in self.meter_sites],
            **self.meter,
            "market_sites": [self.world.site_names[s] for s in self.market_sites],
            **self.market,
            "market_dropped": self._bids_dropped(),
            **self.conflicts,
            "sent": c.sent,
            "sent_bytes": c.sent_bytes,
            "received": c.received,
            "received_bytes": c.received_bytes,
            "dropped": c.dropped,
            "refused": c.refused,
            "oversize": c.oversize,
            "malformed": c.malformed,
            "unexpected": c.unexpected,
            "duplicates": c.duplicates,
        }

    def _bids_dropped(self) -> dict[str, int]:
        """The boards' bids dropped, per reason: those of :data:`~fleet.sim.market.DROPS` (``foreign`` includes a
        header naming another sender than its topic's device), ``malformed`` and ``duplicates`` (QoS 1)."""
        c = self.bid_counters
        foreign = self.bids_dropped["foreign"] + c.unexpected
        return {**self.bids_dropped, "foreign": foreign, "malformed": c.malformed, "duplicates": c.duplicates}

    def close(self, wait: float = 2.0) -> None:
        """Send what can still be sent (waiting up to ``wait`` s for acknowledgements), then disconnect."""
        deadline = time.monotonic() + wait
        self.uplink.flush()
        while self.uplink.inflight and time.monotonic() < deadline:
            time.sleep(0.02)
            self.uplink.flush()
        self.transport.close()
        self.outbox.close()
        self._folder.cleanup()


def _online(received: Received) -> bool:
    """Whether a status message says its sender is online (``[1.0]``); one that does not decode does not."""
    try:
        message = decode(received.payload)
    except WireError:
        return False
    return message.kind == Kind.STATUS and [a.tolist() for a in message.arrays] == [[1.0]]


def check_realtime(scenario, realtime_run: bool) -> None:
    """External devices need a real-time run; raise :class:`ConfigError` otherwise."""
    if scenario.fleet.external and not realtime_run:
        raise ConfigError(
            f"fleet.external lists real devices ({', '.join(scenario.fleet.external)}); they join only a real-time run "
            "through a broker: fleet run --realtime --broker URL (or remove fleet.external to simulate them)"
        )


def attach(sim, options: RealtimeOptions) -> Bridge:
    """Make ``sim`` a real-time simulation whose learner messages go through the broker;
    returns the started bridge (close it after the run). :class:`ConfigError` for a learner
    that cannot run so, :class:`TransportError` when the broker cannot be reached."""
    s, learner = sim.scenario, sim.fleet.controller
    if learner.exchange == "cloud":
        raise ConfigError(
            f"learner {s.learner.name} exchanges through the cloud, which a real-time mixed run does not bridge; "
            "use a learner that talks to its neighbours (e.g. diffusion-v1) or run without --realtime"
        )
    p = learner.flat_params().shape[1] if hasattr(learner, "flat_params") else 1
    comm = getattr(getattr(learner, "cfg", None), "comm", None)
    if comm is not None and comm.k(p) < p:
        raise ConfigError(
            "learner.params.comm.topk < 1 (sparse increments) is not bridged in a real-time run; "
            "set learner.params.comm.topk: 1 (dense parameters)"
        )
    w = sim.world
    external = np.isin(w.device_names, s.fleet.external)
    qos, meters = learner.qos if learner.communicates else 0, sim.meters is not None
    bridge = Bridge(w, external, p, qos, options.transport(BRIDGE_CLIENT_ID), meters, sim.market)
    bridge.start(options.connect_wait)
    epoch = time.time() if options.epoch is None else options.epoch
    sim.env = realtime.realtime_environment(options.speedup, epoch, sim.env.now)
    sim.bridge, sim.external = bridge, external
    bridge.speedup, bridge.epoch, bridge.broker = options.speedup, epoch, options.broker
    return bridge
