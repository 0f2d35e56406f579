"""An in-process MQTT broker and its clients, for tests and single-machine demos.

:class:`MemoryBroker` routes the messages of its :class:`MemoryTransport` clients in the
publisher's thread, with the MQTT v5 semantics mosquitto 2.0 applies (see
:mod:`fleet.mqtt.transport`): ``+``/``#`` filters, QoS 0 and 1 (a subscriber gets the lower of
the publish's and its subscription's QoS; overlapping subscriptions give one copy each),
retained messages (sent on subscribing; an empty retained payload deletes the topic's
and is still forwarded to current subscribers), wills, persistent sessions (a client with a
session expiry keeps its subscriptions and gets the QoS 1 messages that arrived while it was
away, if it comes back in time), a Maximum Packet Size and an ACL.

Faults to inject: :meth:`MemoryBroker.drop` kills a client as a crash would (its will is
published), :meth:`MemoryBroker.stop` and :meth:`MemoryBroker.start` make an outage. The broker
keeps sessions and retained messages across an outage, as mosquitto with persistence does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fleet.errors import ConfigError, TransportError
from fleet.mqtt.retained import RetainedStore
from fleet.mqtt.topics import topic_matches, validate_topic_filter
from fleet.mqtt.transport import (
    MAX_SESSION_EXPIRY,
    MQTT_MAX_PACKET_SIZE,
    NO_MATCHING_SUBSCRIBERS,
    NOT_AUTHORIZED,
    PUBLISH_HEADER,
    SUCCESS,
    TOPIC_ALLOWANCE,
    Delivery,
    Inbox,
    Received,
    Will,
    check_publish,
    check_qos,
    payload_limit,
)

Acl = Callable[[str, str, str], bool]
"""``acl(client_id, topic, access) -> allowed`` with ``access`` ``"write"`` (checked when the
client publishes, and for its will) or ``"read"`` (checked for each client a message would reach,
as mosquitto does; subscribing itself is always granted). Called under the broker's lock: it
must not call the broker."""


@dataclass
class _Session:
    """What the broker keeps for one client id: subscriptions and, while away, QoS 1 messages."""

    expiry: float
    subscriptions: dict[str, int] = field(default_factory=dict)
    queued: list[tuple[str, bytes]] = field(default_factory=list)
    left_at: float | None = None

    def expired(self, now: float) -> bool:
        return self.left_at is not None and now - self.left_at > self.expiry


class MemoryBroker:
    """An MQTT broker in this process; thread-safe (one lock around all its state)."""

    def __init__(self, max_packet_size: int = MQTT_MAX_PACKET_SIZE, acl: Acl | None = None) -> None:
        smallest = PUBLISH_HEADER + TOPIC_ALLOWANCE + 1
        if not smallest <= max_packet_size <= MQTT_MAX_PACKET_SIZE:
            raise ConfigError(
                f"max_packet_size must be in [{smallest}, {MQTT_MAX_PACKET_SIZE}] bytes, got {max_packet_size!r}"
            )
        self.max_packet_size = max_packet_size
        self.acl = acl
        self._lock = threading.RLock()
        self._running = True
        self._retained = RetainedStore()
        self._sessions: dict[str, _Session] = {}
        self._online: dict[str, MemoryTransport] = {}
        self._waiting: dict[str, MemoryTransport] = {}
        """Clients that asked to connect while the broker was stopped; connected on :meth:`start`."""

    def drop(self, client_id: str) -> None:
        """End ``client_id``'s connection abruptly, as if its device crashed: its will is
        published and its session kept for its expiry; that transport is finished."""
        with self._lock:
            client = self._online.get(client_id)
            if client is None:
                raise TransportError(f"no client {client_id!r} is connected to drop; connected: {sorted(self._online)}")
            self._disconnect(client, will=True)
            client._ended = "was dropped by the broker"

    def stop(self) -> None:
        """Take the broker down: every client is disconnected (no will is published) and cannot
        publish until :meth:`start`, which reconnects them all."""
        with self._lock:
            self._running = False
            for client in list(self._online.values()):
                self._disconnect(client, will=False)
                self._waiting[client.client_id] = client

    def start(self) -> None:
        """Bring the broker back up and reconnect the clients that wait for it."""
        with self._lock:
            self._running = True
            waiting, self._waiting = self._waiting, {}
            for client in waiting.values():
                self._connect(client)

    # ---------------------------------------------------------------- for MemoryTransport, under the lock

    def _connect(self, client: MemoryTransport) -> None:
        if not self._running:
            self._waiting[client.client_id] = client
            return
        old = self._online.get(client.client_id)
        if old is not None:
            self._disconnect(old, will=True)
            old._ended = "lost its session to another connection with the same client id; give every device its own"
        now = time.monotonic()
        session = self._sessions.get(client.client_id)
        if session is None or client.session_expiry == 0 or session.expired(now):
            session = self._sessions[client.client_id] = _Session(client.session_expiry)
        session.expiry, session.left_at = client.session_expiry, None
        self._online[client.client_id] = client
        client._up.set()
        for topic, payload in session.queued:
            client._receive(Received(topic, payload, 1, False, now))
        session.queued.clear()
        for topic_filter, qos in client._filters.items():
            self._subscribe(client, topic_filter, qos, retained_if_new=True)

    def _disconnect(self, client: MemoryTransport, will: bool) -> None:
        del self._online[client.client_id]
        client._up.clear()
        session = self._sessions[client.client_id]
        if session.expiry == 0:
            del self._sessions[client.client_id]
        else:
            session.left_at = time.monotonic()
        if will and client.will is not None:
            w = client.will
            self._route(client.client_id, w.topic, w.payload, w.qos, w.retain)

    def _subscribe(self, client: MemoryTransport, topic_filter: str, qos: int, retained_if_new: bool) -> int:
        """Add or update a subscription; send the retained messages it matches (only if it is
        new when ``retained_if_new``). Returns the granted QoS."""
        subscriptions = self._sessions[client.client_id].subscriptions
        new = topic_filter not in subscriptions
        subscriptions[topic_filter] = qos
        if new or not retained_if_new:
            now = time.monotonic()
            for topic, payload in self._retained.matching(topic_filter):
                if self.acl is None or self.acl(client.client_id, topic, "read"):
                    client._receive(Received(topic, payload, qos, True, now))
        return qos

    def _route(self, sender: str, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        """Deliver one publish to every matching session; returns the PUBACK reason code."""
        if self.acl is not None and not self.acl(sender, topic, "write"):
            return NOT_AUTHORIZED
        if retain:
            self._retained.set(topic, payload)
        now, matched = time.monotonic(), False
        for client_id, session in list(self._sessions.items()):
            if session.expired(now):
                del self._sessions[client_id]
                continue
            granted = [q for f, q in session.subscriptions.items() if topic_matches(f, topic)]
            matched = matched or bool(granted)
            if not granted or (self.acl is not None and not self.acl(client_id, topic, "read")):
                continue
            client = self._online.get(client_id)
            for q in granted:  # one copy per matching subscription, as mosquitto sends
                if client is not None:
                    client._receive(Received(topic, payload, min(qos, q), False, now))
                elif min(qos, q) == 1:
                    session.queued.append((topic, payload))
        return SUCCESS if matched else NO_MATCHING_SUBSCRIBERS


class MemoryTransport:
    """One client of a :class:`MemoryBroker`, keeping :class:`fleet.mqtt.transport.Transport`.

    ``session_expiry`` in seconds: 0 ends the session with the connection; more keeps its
    subscriptions and QoS 1 messages while the client is away, for a new transport with the
    same ``client_id`` to resume. Acknowledgements are immediate, so nothing waits in flight.
    """

    def __init__(
        self, broker: MemoryBroker, client_id: str, *, will: Will | None = None, session_expiry: int = 0
    ) -> None:
        if not isinstance(client_id, str) or not client_id:
            raise ConfigError(f"client_id must be a non-empty string, got {client_id!r}")
        if not 0 <= session_expiry <= MAX_SESSION_EXPIRY:
            raise ConfigError(f"session_expiry must be in [0, {MAX_SESSION_EXPIRY}] seconds, got {session_expiry!r}")
        if will is not None:
            check_publish(will.topic, will.payload, will.qos, broker.max_packet_size)
        self.client_id = client_id
        self.will = will
        self.session_expiry = session_expiry
        self._broker = broker
        self._filters: dict[str, int] = {}
        self._inbox = Inbox()
        self._up = threading.Event()
        self._ended: str | None = None
        """Why this transport cannot be used any more: closed, dropped or taken over."""

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    @property
    def max_payload(self) -> int:
        return payload_limit(self._broker.max_packet_size)

    def connect(self, timeout: float | None = None) -> bool:
        with self._broker._lock:
            self._check_usable()
            if not self._up.is_set():
                self._broker._connect(self)
        return self._up.wait(timeout)

    def subscribe(self, topic_filter: str, qos: int = 1) -> Delivery:
        validate_topic_filter(topic_filter)
        check_qos(qos)
        delivery = Delivery()
        with self._broker._lock:
            self._check_usable()
            self._filters[topic_filter] = qos
            delivery.settle(
                self._broker._subscribe(self, topic_filter, qos, retained_if_new=False) if self.connected else None
            )
        return delivery

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> Delivery:
        check_publish(topic, payload, qos, self._broker.max_packet_size)
        delivery = Delivery()
        with self._broker._lock:
            self._check_usable()
            if not self.connected:
                raise TransportError(
                    f"client {self.client_id!r} is not connected (the broker is stopped); buffer and retry"
                )
            code = self._broker._route(self.client_id, topic, bytes(payload), qos, retain)
        delivery.settle(code if qos else SUCCESS)
        return delivery

    def drain(self) -> list[Received]:
        return self._inbox.drain()

    def close(self) -> None:
        with self._broker._lock:
            if self._ended is not None:
                return
            self._ended = "was closed"
            if self.connected:
                self._broker._disconnect(self, will=False)
            self._broker._waiting.pop(self.client_id, None)

    def _check_usable(self) -> None:
        if self._ended is not None:
            raise TransportError(f"client {self.client_id!r} {self._ended}; make a new transport to reconnect")

    def _receive(self, message: Received) -> None:
        self._inbox.put(message)
