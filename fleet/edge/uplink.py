"""The agent's way out: every message goes into the persistent outbox, then to the broker.

:meth:`Uplink.queue` queues a message in the :class:`~fleet.edge.outbox.Outbox` (where only the
newest ``params`` per topic is kept; with its stamp, in one transaction), :meth:`Uplink.flush`
sends what is queued, oldest first, while the transport is connected, and :meth:`Uplink.send`
does both:

- a payload larger than the transport's :attr:`~fleet.mqtt.transport.Transport.max_payload`
  is dropped and counted (``oversize``), never sent (a broker would end the connection);
- at most ``max_inflight`` QoS 1 messages await their acknowledgement; the rest wait in the
  outbox (as do all messages when the transport refuses one for being busy or disconnected);
- a QoS 0 message leaves the outbox once the transport took it, a QoS 1 message once the broker
  acknowledged it. An acknowledgement with a reason code >= 128 (e.g. 135, not authorized) is a
  refusal: counted in ``refused`` and logged, and the message dropped (sending it again would
  be refused again). One without answer for ``ack_timeout`` seconds is sent again.

Messages that were written but not acknowledged when the agent stopped stay in the outbox and
are sent again at the next start: delivery is at least once (receivers drop QoS 1 duplicates).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from fleet.edge.counters import Counters
from fleet.edge.outbox import Outbox, Stamp
from fleet.errors import TransportError
from fleet.mqtt.transport import Delivery, Transport, accepted

log = logging.getLogger("fleet.edge")


@dataclass(frozen=True)
class _InFlight:
    delivery: Delivery
    topic: str
    size: int
    since: float
    """``time.monotonic()`` when it was written."""


class Uplink:
    """Outbox plus transport, with the counters of what was sent."""

    def __init__(
        self,
        transport: Transport,
        outbox: Outbox,
        counters: Counters,
        max_inflight: int = 20,
        ack_timeout: float = 60.0,
    ) -> None:
        self.transport, self.outbox, self.counters = transport, outbox, counters
        self.max_inflight, self.ack_timeout = max_inflight, ack_timeout
        self.inflight: dict[int | str, _InFlight] = {}
        """Awaiting an answer, by outbox id (or by topic for messages sent directly)."""

    def send(self, topic: str, payload: bytes, *, kind: str, qos: int, retain: bool = False) -> None:
        """Queue a message and send what can be sent now."""
        self.queue(topic, payload, kind=kind, qos=qos, retain=retain)
        self.flush()

    def queue(
        self, topic: str, payload: bytes, *, kind: str, qos: int, retain: bool = False, stamp: Stamp | None = None
    ) -> None:
        """Queue a message (and its ``stamp``, see :meth:`Outbox.put`), unless it is larger than
        the transport or the outbox takes: then it is dropped and counted (``oversize``)."""
        if self._oversize(topic, payload):
            return
        try:
            self.outbox.put(topic, payload, kind=kind, qos=qos, retain=retain, stamp=stamp)
        except ValueError as e:  # larger than the whole outbox
            self.counters.oversize += 1
            log.error("dropped a %s message on %s: %s", kind, topic, e)

    def send_now(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Publish directly, bypassing the outbox (a status that is only worth sending now);
        False if the transport could not take it."""
        if self._oversize(topic, payload):
            return True
        try:
            delivery = self.transport.publish(topic, payload, qos, retain)
        except TransportError as e:
            log.debug("could not publish on %s now: %s", topic, e)
            return False
        self._track(topic, delivery, topic, len(payload), qos)
        return True

    def flush(self) -> None:
        """Settle the answers that came, then send queued messages while connected and allowed."""
        self.settle()
        if not self.transport.connected:
            return
        room = self.max_inflight - len(self.inflight)
        for msg in self.outbox.peek(len(self.inflight) + max(room, 0) + 1):
            if msg.id in self.inflight:
                continue
            if msg.qos and len(self.inflight) >= self.max_inflight:
                break
            if self._oversize(msg.topic, msg.payload):
                self.outbox.ack([msg.id])
                continue
            try:
                delivery = self.transport.publish(msg.topic, msg.payload, msg.qos, msg.retain)
            except TransportError as e:  # disconnected meanwhile, or too many awaiting their PUBACK
                log.debug("outbox flush paused: %s", e)
                break
            self._track(msg.id, delivery, msg.topic, len(msg.payload), msg.qos)

    def settle(self) -> None:
        """Account for the answers that came for messages in flight (non-blocking)."""
        now = time.monotonic()
        for key, flight in list(self.inflight.items()):
            code = flight.delivery.wait(0)
            if code is None:
                if now - flight.since > self.ack_timeout:
                    del self.inflight[key]  # still queued: sent again by the next flush
                continue
            del self.inflight[key]
            self._settled(key, code, flight.topic, flight.size)

    def _track(self, key: int | str, delivery: Delivery, topic: str, size: int, qos: int) -> None:
        code = delivery.wait(0)
        if qos == 0 or code is not None:
            self._settled(key, 0 if qos == 0 else code, topic, size)
        else:
            self.inflight[key] = _InFlight(delivery, topic, size, time.monotonic())

    def _settled(self, key: int | str, code: int, topic: str, size: int) -> None:
        if isinstance(key, int):
            self.outbox.ack([key])
        if accepted(code):
            self.counters.sent += 1
            self.counters.sent_bytes += size
        else:
            self.counters.refused += 1
            log.error(
                "the broker refused a publish on %s with reason code %d%s",
                topic,
                code,
                " (not authorized: check the ACL)" if code == 135 else "",
            )

    def _oversize(self, topic: str, payload: bytes) -> bool:
        limit = self.transport.max_payload
        if len(payload) <= limit:
            return False
        self.counters.oversize += 1
        log.error(
            "dropped a message of %d bytes on %s: the broker accepts at most %d bytes of payload",
            len(payload),
            topic,
            limit,
        )
        return True
