"""The simulated network: device uplinks -> MQTT broker -> subscriber downlinks, in bulk.

A batch of publishes of one kind (all encoded by the wire codec, so sizes are real) goes
through four vectorized stages:

1. **uplink** of each sender: serialization behind earlier messages, latency, jitter, loss
   (and, for QoS 1, retransmission after a timeout; a lost PUBACK makes a duplicate);
2. **broker**: one FIFO server whose service time is (1 + fan-out) / capacity, so each inbound
   publish and each outbound delivery costs one unit of capacity; retained messages stored;
3. **routing** through the topic index to every matching subscriber;
4. **downlink** of each subscriber, as in 1; receivers that are offline or cut lose it.

Deliveries wait in per-kind mailboxes with their arrival times; a consumer ``drain``\\ s what
has arrived by its clock, de-duplicated by (receiver, sender, seq). No SimPy process per
message exists.

Accounting (per endpoint; endpoints are the N devices followed by the cloud collector) is
defined once, in :class:`CommStats`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np

from fleet.mqtt.codec import Kind, read_header
from fleet.mqtt.dedup import SeqDeduplicator
from fleet.mqtt.retained import RetainedStore
from fleet.mqtt.routing import TopicIndex
from fleet.mqtt.topics import KINDS, device_topic
from fleet.net.link import LinkDirection
from fleet.net.profiles import LinkProfile
from fleet.net.queues import single_server_departures
from fleet.scenario import BrokerConfig, Qos1Config
from fleet.statefile import (
    StateMismatch,
    array,
    attrs_state,
    entry,
    expect_keys,
    indices,
    load_attrs,
    load_child,
    within,
)


@dataclass
class Outgoing:
    """A batch of M publishes of one kind; ``rows`` are the encoded messages, (M, L) uint8."""

    kind: int
    """Index into ``fleet.mqtt.topics.KINDS``."""
    sender: np.ndarray
    """(M,) int publishing endpoint."""
    seq: np.ndarray
    """(M,) int sequence numbers (as encoded in the rows)."""
    rows: np.ndarray
    qos: int = 0
    retain: bool = False


@dataclass
class Delivered:
    """D deliveries drained from a mailbox.

    ``rows`` (U, L) holds each distinct message once; ``msg`` (D,) indexes into it, so a
    consumer decodes every message once however many subscribers received it.
    """

    receiver: np.ndarray
    sender: np.ndarray
    seq: np.ndarray
    published_at: np.ndarray
    arrived_at: np.ndarray
    msg: np.ndarray
    rows: np.ndarray


@dataclass
class _Pending:
    arrive: np.ndarray  # (D,)
    receiver: np.ndarray  # (D,)
    msg: np.ndarray  # (D,) index into rows
    rows: np.ndarray  # (M, L)
    sender: np.ndarray  # (M,)
    seq: np.ndarray  # (M,)
    published_at: np.ndarray  # (M,)
    qos: int

    def state_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_state(cls, state: dict, n_endpoints: int) -> _Pending:
        """The deliveries a state holds, checked: lengths agree, indices point where they may."""
        expect_keys(state, [f.name for f in fields(cls)])
        with within("rows"):
            rows = array(state["rows"], dtype=np.dtype(np.uint8), shape=(None, None))
        d, m = len(entry(state, "arrive")), len(rows)
        got = {"rows": rows}
        for name, length, ints in (
            ("arrive", d, False),
            ("receiver", d, True),
            ("msg", d, True),
            ("sender", m, True),
            ("seq", m, True),
            ("published_at", m, False),
        ):
            with within(name):
                got[name] = array(state[name], dtype=None if ints else np.dtype(np.float64), shape=(length,))
                if ints and got[name].dtype.kind not in "iu":
                    raise StateMismatch("", f"dtype {got[name].dtype}, expected integers")
        with within("receiver"):
            indices(got["receiver"], n_endpoints)
        with within("sender"):
            indices(got["sender"], n_endpoints)
        with within("msg"):
            indices(got["msg"], m)
        if entry(state, "qos", int) not in (0, 1):
            raise StateMismatch("qos", f"must be 0 or 1, got {state['qos']}")
        return cls(**got, qos=state["qos"])


@dataclass
class CommStats:
    """Per-endpoint counters, each (N + 1,): devices, then the collector. The one definition of
    the byte and message figures of metrics.csv (``net/*``) and summary.json (``comm``).

    A *publish* is one message an endpoint hands to its uplink. It goes *on the air* unless it
    is larger than its link's ``max_payload_bytes`` or the broker's ``max_packet_bytes`` (a
    scenario whose messages cannot fit is refused, so that happens only to a profile changed
    after validation); then it is dropped at once and counts in neither ``messages_sent`` nor
    the bytes. *On the air* bytes are the codec payload plus the link's ``overhead_bytes``."""

    n: int
    bytes_sent: np.ndarray = field(init=False)
    """On the air, sending: payload + overhead of every transmission, QoS 1 retransmissions
    included, also of a device whose link is down (its radio still transmits)."""
    payload_bytes_sent: np.ndarray = field(init=False)
    """Codec payload of the publishes put on the air, once per publish (no overhead, no
    retransmissions): at most ``bytes_sent``."""
    bytes_received: np.ndarray = field(init=False)
    """On the air, receiving: payload + overhead of every delivery that reached the endpoint,
    duplicates included."""
    messages_sent: np.ndarray = field(init=False)
    """Publishes put on the air, once each however often they were retransmitted."""
    messages_delivered: np.ndarray = field(init=False)
    """Deliveries to a subscriber, de-duplicated (counted at the receiver)."""
    messages_dropped: np.ndarray = field(init=False)
    """Publishes lost before the broker (counted at the sender), deliveries lost after it
    (counted at the receiver), and publishes over a size limit (at the sender)."""
    duplicates: np.ndarray = field(init=False)
    """QoS 1 copies of a message a receiver already had (counted at the receiver)."""
    radio_s: np.ndarray = field(init=False)
    """Seconds the endpoint's radio was busy sending and receiving (bytes on the air / rate)."""
    delay_sum_s: np.ndarray = field(init=False)
    """Sum over de-duplicated deliveries of (arrival - publish time), at the receiver."""

    def __post_init__(self) -> None:
        for name in self.STATE:
            setattr(self, name, np.zeros(self.n))

    @property
    def STATE(self) -> tuple[str, ...]:
        """Every counter (:mod:`fleet.statefile`)."""
        return tuple(name for name in self.__dataclass_fields__ if name != "n")

    def state_dict(self) -> dict:
        return attrs_state(self, self.STATE)

    def load_state_dict(self, state: dict) -> None:
        load_attrs(self, state, self.STATE)


class SimNetwork:
    """The network model for N devices plus one cloud collector (endpoint N)."""

    def __init__(
        self,
        index: TopicIndex,
        profiles: list[LinkProfile],
        profile_of: np.ndarray,
        topics: list[list[str]],
        broker: BrokerConfig,
        qos1: Qos1Config,
        rng_up: np.random.Generator,
        rng_down: np.random.Generator,
    ) -> None:
        """``profile_of`` (N+1,) indexes ``profiles``; ``topics[e][k]`` is endpoint e's topic of kind k."""
        self.index = index
        self.topics = topics
        self.broker = broker
        self.qos1 = qos1
        n_end = len(profile_of)
        self.uplink = LinkDirection.from_profiles(profiles, profile_of, "up", rng_up)
        self.downlink = LinkDirection.from_profiles(profiles, profile_of, "down", rng_down)
        self.max_payload = np.array([p.max_payload_bytes for p in profiles])[profile_of]
        self.overhead = np.array([p.overhead_bytes for p in profiles], dtype=float)[profile_of]
        self.down_bps = np.array([p.down_bps for p in profiles], dtype=float)[profile_of]
        self.online = np.ones(n_end, bool)
        self.cut = np.zeros(n_end, bool)
        self.broker_free_at = 0.0
        self.stats = CommStats(n_end)
        self.retained = RetainedStore()
        self.subscriptions: dict[int, list[str]] = {}
        self._pending: dict[int, list[_Pending]] = {k: [] for k in range(len(KINDS))}
        self._dedup = [SeqDeduplicator() for _ in KINDS]
        """Sequence numbers count per (sender, kind) stream, so de-duplication is per kind."""

    # --- checkpoints -------------------------------------------------------------------

    STATE = ("uplink", "downlink", "online", "cut", "broker_free_at", "stats", "retained")
    """What changes as messages go, besides the deliveries waiting in the mailboxes and the
    de-duplication windows (:mod:`fleet.statefile`). Subscriptions are made at construction."""

    def state_dict(self) -> dict:
        """:attr:`STATE`, and per message kind the ``pending`` deliveries and ``dedup`` windows."""
        return {
            **attrs_state(self, self.STATE),
            "pending": {kind: [p.state_dict() for p in self._pending[k]] for k, kind in enumerate(KINDS)},
            "dedup": {kind: self._dedup[k].state_dict() for k, kind in enumerate(KINDS)},
        }

    def load_state_dict(self, state: dict) -> None:
        expect_keys(state, (*self.STATE, "pending", "dedup"))
        load_attrs(self, {name: state[name] for name in self.STATE}, self.STATE)
        pending, dedup = entry(state, "pending", dict), entry(state, "dedup", dict)
        for name, saved in (("pending", pending), ("dedup", dedup)):
            with within(name):
                expect_keys(saved, KINDS)
        for k, kind in enumerate(KINDS):
            with within("pending"):
                batches = entry(pending, kind, list)
            self._pending[k] = []
            for i, batch in enumerate(batches):
                with within(f"pending.{kind}.{i}"):
                    self._pending[k].append(_Pending.from_state(batch, len(self.online)))
            with within("dedup"):
                load_child(dedup, kind, self._dedup[k])

    # --- subscriptions -----------------------------------------------------------------

    def subscribe(self, subscriber: int, filters: list[str]) -> None:
        for f in filters:
            self.index.subscribe(subscriber, f)
        self.subscriptions.setdefault(subscriber, []).extend(filters)

    @property
    def unreachable(self) -> np.ndarray:
        """(N+1,) bool: endpoints that can neither send nor receive now."""
        return ~self.online | self.cut

    # --- publishing --------------------------------------------------------------------

    def publish(self, t: float, out: Outgoing) -> None:
        """Devices publish ``out`` at time ``t``: uplink, broker, routing, downlink."""
        if len(out.sender) == 0:
            return
        size = out.rows.shape[1]
        fits = size <= np.minimum(self.max_payload[out.sender], self.broker.max_packet_bytes)
        _add(self.stats.messages_dropped, out.sender[~fits])
        keep = np.flatnonzero(fits)
        _add(self.stats.messages_sent, out.sender[keep])
        _add(self.stats.payload_bytes_sent, out.sender[keep], size)
        ready = np.full(len(keep), t)
        event_msg, event_arrive = self._hop(
            self.uplink, self.downlink, ready, out.sender[keep], size, out.qos, count_tx=True
        )
        event_msg = keep[event_msg]
        lost = np.ones(len(out.sender), bool)
        lost[event_msg] = False
        lost[~fits] = False
        _add(self.stats.messages_dropped, out.sender[lost])
        self._through_broker(out, event_msg, event_arrive, np.full(len(out.sender), t))

    def publish_from_broker(self, t: np.ndarray, out: Outgoing) -> None:
        """Messages that originate at the broker itself (will messages) at times ``t`` (M,)."""
        if len(out.sender):
            self._through_broker(out, np.arange(len(out.sender)), np.asarray(t, float), np.asarray(t, float))

    def _through_broker(
        self, out: Outgoing, event_msg: np.ndarray, arrive: np.ndarray, published_at: np.ndarray
    ) -> None:
        """Broker queue, retained store, routing and downlinks for the K events that reached the broker."""
        if out.retain:
            kept = np.unique(event_msg)
            for sender, row in zip(out.sender[kept].tolist(), out.rows[kept]):
                self.retained.set(self.topics[sender][out.kind], row.tobytes())
        event, receiver = self.index.route(out.sender[event_msg], np.full(len(event_msg), out.kind))
        fanout = np.bincount(event, minlength=len(event_msg))
        depart, self.broker_free_at = single_server_departures(
            arrive, (1.0 + fanout) / self.broker.capacity_msgs_per_s, self.broker_free_at
        )
        self._downlink(
            out.kind, depart[event], receiver, event_msg[event], out.rows, out.sender, out.seq, published_at, out.qos
        )

    def _downlink(self, kind, ready, receiver, msg, rows, sender, seq, published_at, qos) -> None:
        got, arrive = self._hop(self.downlink, self.uplink, ready, receiver, rows.shape[1], qos, count_tx=False)
        lost = np.ones(len(receiver), bool)
        lost[got] = False
        _add(self.stats.messages_dropped, receiver[lost])
        if len(got):
            self._pending[kind].append(_Pending(arrive, receiver[got], msg[got], rows, sender, seq, published_at, qos))

    def _hop(self, link: LinkDirection, reverse: LinkDirection, ready, endpoint, size: int, qos: int, count_tx: bool):
        """One MQTT hop over ``link``; returns (index of the message, arrival time) per copy that
        got through (K,), duplicates included. QoS 1 retries until acknowledged or out of tries."""
        pending = np.arange(len(endpoint))
        got, at = [], []
        tries = 1 if qos == 0 else 1 + self.qos1.max_retries
        sizes = np.full(len(endpoint), size)
        for _ in range(tries):
            if len(pending) == 0:
                break
            ep = endpoint[pending]
            tx = link.send(ready, ep, sizes[pending], down=self.unreachable)
            if count_tx:
                _add(self.stats.bytes_sent, ep, size + self.overhead[ep])
                _add(self.stats.radio_s, ep, tx.airtime_s)
            ok = ~tx.lost
            got.append(pending[ok])
            at.append(tx.arrive[ok])
            if qos == 0:
                break
            acked = ok.copy()
            acked[ok] = ~(reverse.loss.lost(ep[ok]) | self.unreachable[ep[ok]])
            pending, ready = pending[~acked], tx.depart[~acked] + self.qos1.timeout
        if not got:
            return np.zeros(0, np.int64), np.zeros(0)
        return np.concatenate(got), np.concatenate(at)

    # --- reconnection: retained messages -------------------------------------------------

    def resend_retained(self, t: float, subscribers: Sequence[int]) -> None:
        """Reconnecting subscribers receive the retained messages matching their filters
        (subscriptions are QoS 1, so the retained copies are retried on a lossy downlink), in one
        downlink batch per kind and message size. Their delay is counted from the re-send; the
        payload's own timestamp still tells its age."""
        batches: dict[tuple[Kind, int], list[tuple[int, int, int, bytes]]] = {}
        for subscriber in subscribers:
            for f in self.subscriptions.get(subscriber, []):
                for _topic, payload in self.retained.matching(f):
                    kind, sender, seq = read_header(payload)
                    batches.setdefault((kind, len(payload)), []).append((subscriber, sender, seq, payload))
        for (kind, size), copies in batches.items():
            receiver, sender, seq, payloads = zip(*copies)
            m = len(copies)
            rows = np.frombuffer(b"".join(payloads), np.uint8).reshape(m, size)
            self._downlink(
                KINDS.index(kind.name.lower()),
                np.full(m, t),
                np.array(receiver),
                np.arange(m),
                rows,
                np.array(sender),
                np.array(seq),
                np.full(m, t),
                1,
            )

    # --- consuming -----------------------------------------------------------------------

    def drain(self, kind: int, t: float) -> list[Delivered]:
        """Every delivery of ``kind`` that arrived by ``t``, de-duplicated, in arrival order;
        one :class:`Delivered` per message layout (row width), since layouts can differ within
        a kind (e.g. dense and sparse parameter messages)."""
        ready: dict[int, list[tuple[_Pending, np.ndarray]]] = {}
        later = []
        for p in self._pending[kind]:
            now = p.arrive <= t
            if now.any():
                ready.setdefault(p.rows.shape[1], []).append((p, now))
            if not now.all():
                later.append(
                    _Pending(
                        p.arrive[~now], p.receiver[~now], p.msg[~now], p.rows, p.sender, p.seq, p.published_at, p.qos
                    )
                )
        self._pending[kind] = later
        return [self._merge(kind, batches) for _, batches in sorted(ready.items())]

    def _merge(self, kind: int, ready: list[tuple[_Pending, np.ndarray]]) -> Delivered:
        offsets = np.cumsum([0] + [len(p.rows) for p, _ in ready[:-1]])
        receiver = np.concatenate([p.receiver[m] for p, m in ready])
        msg = np.concatenate([p.msg[m] + off for (p, m), off in zip(ready, offsets)])
        arrive = np.concatenate([p.arrive[m] for p, m in ready])
        rows = np.concatenate([p.rows for p, _ in ready])
        sender = np.concatenate([p.sender for p, _ in ready])
        seq = np.concatenate([p.seq for p, _ in ready])
        published = np.concatenate([p.published_at for p, _ in ready])
        reliable = np.concatenate([np.full(int(m.sum()), p.qos > 0) for p, m in ready])
        order = np.argsort(arrive, kind="stable")
        receiver, msg, arrive, reliable = receiver[order], msg[order], arrive[order], reliable[order]
        fresh = np.ones(len(receiver), bool)  # QoS 0 cannot duplicate: only QoS 1 copies are checked
        fresh[reliable] = self._dedup[kind].accept(receiver[reliable], sender[msg[reliable]], seq[msg[reliable]])
        self._account_received(receiver, msg, arrive, rows.shape[1], published, fresh)
        receiver, msg, arrive = receiver[fresh], msg[fresh], arrive[fresh]
        return Delivered(receiver, sender[msg], seq[msg], published[msg], arrive, msg, rows)

    def _account_received(self, receiver, msg, arrive, size, published, fresh) -> None:
        s = self.stats
        on_air = size + self.overhead[receiver]
        _add(s.bytes_received, receiver, on_air)
        _add(s.radio_s, receiver, on_air * 8.0 / self.down_bps[receiver])
        _add(s.duplicates, receiver[~fresh])
        _add(s.messages_delivered, receiver[fresh])
        _add(s.delay_sum_s, receiver[fresh], (arrive - published[msg])[fresh])


def _add(counter: np.ndarray, endpoint: np.ndarray, amount: np.ndarray | float = 1.0) -> None:
    """``counter[endpoint[i]] += amount`` (or ``amount[i]``) for every i, repeats included.
    ``np.add.at`` with a float array: given a Python scalar it takes a slow path, 10 to 20
    times slower."""
    np.add.at(counter, endpoint, np.full(endpoint.shape, amount, counter.dtype) if np.ndim(amount) == 0 else amount)


def endpoint_topics(sites: list[str], names: list[str]) -> list[list[str]]:
    """``topics[e][k]`` for every endpoint e and kind k (the collector publishes under 'cloud')."""
    return [[device_topic(site, name, kind) for kind in KINDS] for site, name in zip(sites, names)]
