"""The Transport protocol: how one MQTT client's messages reach a broker, simulated or real.

Application code (the edge agent, the real-time bridge of a mixed fleet) sees messages, not
sockets: it publishes bytes on a topic, subscribes to filters and drains what arrived. Two
implementations keep the same contract (checked by :func:`fleet.testing.check_transport_contract`):
:class:`fleet.mqtt.memory.MemoryTransport`, clients of an in-process broker for tests and
single-machine demos, and :class:`fleet.mqtt.paho_transport.PahoTransport`, paho-mqtt 2.x
speaking MQTT v5 to a real broker. A real transport calls back on its own network thread; its
callbacks only put messages into a thread-safe inbox that :meth:`Transport.drain` empties on the
caller's thread, so nothing in the agent runs on the network thread.

Both follow mosquitto 2.0 where MQTT leaves a choice: a QoS 1 publish that no subscription
matches is acknowledged with :data:`NO_MATCHING_SUBSCRIBERS` (a success), a publish the ACL
refuses with :data:`NOT_AUTHORIZED`, a message that matches several subscriptions of a client
reaches it once per subscription, a subscription the ACL does not let the client read is
still granted (the broker filters what it forwards), and a packet over the broker's Maximum
Packet Size ends the connection, so transports refuse such a payload before sending it.
QoS 2 is not offered; QoS 1 can deliver a message twice (see :mod:`fleet.mqtt.dedup`).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from fleet.errors import ConfigError, TransportError
from fleet.mqtt.topics import validate_topic_name

SUCCESS = 0
"""MQTT v5 reason code of an accepted publish (PUBACK) or subscription (granted QoS 0)."""
NO_MATCHING_SUBSCRIBERS = 16
"""MQTT v5 reason code 0x10: a QoS 1 publish accepted although no subscription matched it."""
NOT_AUTHORIZED = 135
"""MQTT v5 reason code 0x87: the broker refused the operation (ACL, credentials)."""

MQTT_MAX_PACKET_SIZE = 268_435_460
"""Largest MQTT packet: 1 byte of type, 4 of remaining length and 268,435,455 of body; the
limit when a broker announces no Maximum Packet Size."""
PUBLISH_HEADER = 10
"""Bytes of a QoS 1 PUBLISH besides topic and payload, at most: type (1), remaining length
(up to 4), topic length (2), packet identifier (2), property length (1, no properties)."""
MAX_SESSION_EXPIRY = 2**32 - 1
"""Largest MQTT v5 Session Expiry Interval, in seconds; it means the session never expires."""
TOPIC_ALLOWANCE = 128
"""Topic length in UTF-8 bytes that :attr:`Transport.max_payload` leaves room for. Fleet topics
``fleet/<site>/<device>/<kind>`` are much shorter; a longer topic gets that much less payload."""


def accepted(code: int | None) -> bool:
    """Whether a broker's answer (a PUBACK reason code or a granted QoS) means success."""
    return code is not None and code < 0x80


def payload_limit(max_packet_size: int) -> int:
    """The largest payload that fits a PUBLISH on any topic of up to :data:`TOPIC_ALLOWANCE` bytes."""
    return max(0, max_packet_size - PUBLISH_HEADER - TOPIC_ALLOWANCE)


def check_qos(qos: int) -> None:
    """Raise :class:`ConfigError` unless ``qos`` is 0 or 1."""
    if qos not in (0, 1):
        raise ConfigError(f"qos must be 0 or 1 (QoS 2 is not supported), got {qos!r}")


def check_publish(topic: str, payload: bytes, qos: int, max_packet_size: int) -> None:
    """Raise unless ``payload`` can be published on ``topic`` to a broker whose Maximum Packet
    Size is ``max_packet_size``: :class:`fleet.errors.WireError` for a bad topic name,
    :class:`ConfigError` for a bad QoS, :class:`TransportError` for a payload over the limit."""
    validate_topic_name(topic)
    check_qos(qos)
    topic_bytes = len(topic.encode("utf-8"))
    room = max_packet_size - PUBLISH_HEADER - max(topic_bytes, TOPIC_ALLOWANCE)
    if len(payload) > room:
        raise TransportError(
            f"a payload of {len(payload)} bytes on {topic!r} does not fit the broker's maximum packet size of "
            f"{max_packet_size} bytes (at most {max(room, 0)} bytes of payload); send less per message"
        )


class Delivery:
    """The broker's answer to one publish or subscription, as it comes.

    A QoS 0 publish is settled with :data:`SUCCESS` once written to the connection, a QoS 1
    publish with the reason code of its PUBACK, a subscription with the granted QoS or a
    refusal code (>= 0x80). ``None`` means no answer will come: the connection that carried it
    was lost (a QoS 0 message is then lost; a subscription is sent again on reconnecting) or the
    transport was closed. Any thread may wait.
    """

    __slots__ = ("_event", "_code")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._code: int | None = None

    def settle(self, code: int | None) -> None:
        """Record the answer and wake the waiters (called by transports, once)."""
        self._code = code
        self._event.set()

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the answer came (or ``timeout`` seconds passed, giving ``None``) and return it."""
        self._event.wait(timeout)
        return self._code


@dataclass(frozen=True)
class Received:
    """One message as it arrived at a client."""

    topic: str
    payload: bytes
    qos: int
    """The lower of the publish's QoS and the subscription's."""
    retain: bool
    """True only for a retained message sent because this client subscribed."""
    arrived_at: float
    """``time.monotonic()`` on the receiving machine when the transport got it."""


class Inbox:
    """Messages handed over from a network thread, taken in arrival order by another."""

    def __init__(self) -> None:
        self._messages: deque[Received] = deque()
        self._lock = threading.Lock()

    def put(self, message: Received) -> None:
        with self._lock:
            self._messages.append(message)

    def drain(self) -> list[Received]:
        """Everything put since the last call, oldest first."""
        with self._lock:
            messages = list(self._messages)
            self._messages.clear()
        return messages


@dataclass(frozen=True)
class Will:
    """The message a broker publishes for a client that vanishes without disconnecting."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class Transport(Protocol):
    """One client connection to one broker.

    A transport is used once: after :meth:`close` (or an abrupt end injected by a test) make a
    new one with the same ``client_id`` to resume a persistent session.
    """

    client_id: str

    @property
    def connected(self) -> bool:
        """Whether the connection is up now (it comes and goes; the transport reconnects)."""

    @property
    def max_payload(self) -> int:
        """Largest payload in bytes the broker accepts on this connection: its CONNACK Maximum
        Packet Size where it sends one, less :data:`PUBLISH_HEADER` and :data:`TOPIC_ALLOWANCE`."""

    def connect(self, timeout: float | None = None) -> bool:
        """Start connecting and keep reconnecting with backoff until :meth:`close`. Waits up
        to ``timeout`` seconds for the connection and says whether it is up; a broker that is
        away is not an error (the caller buffers), refused credentials are
        (:class:`fleet.errors.TransportError`)."""

    def subscribe(self, topic_filter: str, qos: int = 1) -> Delivery:
        """Subscribe now if connected, and again after every reconnect (MQTT v5 Retain Handling
        1: a broker that kept the session sends no retained message twice). Once the returned
        :class:`Delivery` gives the granted QoS, whatever is published afterwards reaches this
        client; if not connected it gives ``None`` at once and the subscription is sent on connecting."""

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> Delivery:
        """Send one message; raises :class:`fleet.errors.TransportError` when not connected,
        when the payload exceeds :attr:`max_payload`, or when too many QoS 1 messages await
        their acknowledgement (the caller buffers and retries)."""

    def drain(self) -> list[Received]:
        """Every message that arrived since the last call, oldest first (thread-safe)."""

    def close(self) -> None:
        """Disconnect cleanly (no will is published) and stop the network thread."""
