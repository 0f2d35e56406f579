"""The Transport protocol: how one MQTT client's messages reach a broker, simulated or real.

Application code (the edge agent, the real-time bridge of a mixed fleet) sees messages, not
sockets: it publishes bytes on a topic, subscribes to filters and drains what arrived. Two
implementations keep the same contract (checked by :func:`fleet.testing.check_transport_contract`):
an in-process broker for tests and single-machine demos, and paho-mqtt 2.x speaking MQTT v5
to a real broker. A real transport calls back on its own network thread; its callbacks only
put messages into a thread-safe inbox that :meth:`Transport.drain` empties on the caller's
thread, so nothing in the agent runs on the network thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

SUCCESS = 0
"""MQTT v5 reason code of an accepted publish (PUBACK) or subscription (granted QoS 0)."""
NOT_AUTHORIZED = 135
"""MQTT v5 reason code 0x87: the broker refused the operation (ACL, credentials)."""


@dataclass(frozen=True)
class Received:
    """One message as it arrived at a client."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    arrived_at: float
    """``time.monotonic()`` on the receiving machine when the transport got it."""


@dataclass(frozen=True)
class Will:
    """The message a broker publishes for a client that vanishes without disconnecting."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class Delivery(Protocol):
    """The fate of one publish: QoS 0 is done once written; QoS 1 when the PUBACK arrives."""

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the broker answered (or ``timeout`` seconds passed, giving ``None``);
        returns the MQTT v5 reason code, :data:`SUCCESS` or a refusal such as :data:`NOT_AUTHORIZED`."""


class Transport(Protocol):
    """One client connection to one broker."""

    client_id: str

    @property
    def connected(self) -> bool:
        """Whether the connection is up now (it comes and goes; the transport reconnects)."""

    @property
    def max_payload(self) -> int:
        """Largest payload in bytes the broker accepts on this connection (from its CONNACK
        Maximum Packet Size where it sends one, less the PUBLISH header for the longest topic)."""

    def connect(self, timeout: float | None = None) -> bool:
        """Start connecting and keep reconnecting with backoff until :meth:`close`. Waits up
        to ``timeout`` seconds for the first connection and says whether it is up; a broker
        that is away is not an error (the caller buffers), refused credentials are
        (:class:`fleet.errors.TransportError`)."""

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe now if connected, and again after every reconnect that lost the session."""

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> Delivery:
        """Send one message; raises :class:`fleet.errors.TransportError` when not connected,
        when the payload exceeds :attr:`max_payload`, or when too many QoS 1 messages await
        their acknowledgement."""

    def drain(self) -> list[Received]:
        """Every message that arrived since the last call, oldest first (thread-safe)."""

    def close(self) -> None:
        """Disconnect cleanly (no will is published) and stop the network thread."""
