"""Checks on every message an edge agent receives, before anything reaches its learner.

A message is dropped, and counted (see :class:`fleet.edge.counters.Counters`), when:

- its topic is not one the agent listens to (a device that is not a neighbour): ``unexpected``;
- its payload is larger than the codec accepts, or does not decode (truncated, bad CRC,
  another codec version, non-finite values...): ``malformed``;
- its kind differs from its topic's, or its header names another sender than the topic's
  owner (a neighbour's topic carrying someone else's message): ``unexpected`` for a header
  naming another sender, ``malformed`` for the wrong kind;
- its arrays do not have the layout the learner takes (``layout_ok``): ``malformed``;
- it is a QoS 1 message seen before (same sender and sequence number): ``duplicates``.

Nothing here raises on bad input: a board must survive whatever the network brings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fleet.edge.counters import Counters
from fleet.edge.view import Sender
from fleet.errors import WireError
from fleet.mqtt.codec import DEFAULT_MAX_BYTES, Kind, Message, decode
from fleet.mqtt.dedup import SeqDeduplicator
from fleet.mqtt.transport import Received
from fleet.sim.meter import reading_checks


@dataclass(frozen=True)
class Accepted:
    """A received message that passed every check."""

    sender: Sender
    message: Message
    arrived_at: float
    """``time.monotonic()`` when the transport got it."""


def params_layout(p: int) -> Callable[[Message], bool]:
    """Whether a params message is dense ``[values (P,)]`` or sparse ``[indices (k,), values (k,)]``
    with indices in ``[0, P)`` (the wire convention of :mod:`fleet.learners.comm`)."""

    def ok(message: Message) -> bool:
        arrays = message.arrays
        if len(arrays) == 1:
            return arrays[0].shape == (p,) and arrays[0].dtype == np.float32
        if len(arrays) == 2:
            index, values = arrays
            return (
                index.dtype == np.int64
                and values.dtype == np.float32
                and index.ndim == 1
                and index.shape == values.shape
                and bool(((index >= 0) & (index < p)).all())
            )
        return False

    return ok


def cmd_layout(message: Message) -> bool:
    """A command is the device's feeder load as a fraction of its capacity: ``[load (1,)]``, >= 0."""
    return (
        len(message.arrays) == 1
        and message.arrays[0].shape == (1,)
        and message.arrays[0].dtype == np.float32
        and message.arrays[0][0] >= 0
    )


def meter_layout(site: int) -> Callable[[Message], bool]:
    """Whether a meter reading is ``[site, load kW, capacity kW, devices] (4,)`` float32 of the
    device's ``site`` and possible values (:func:`fleet.sim.meter.reading_checks`)."""

    def ok(message: Message) -> bool:
        arrays = message.arrays
        if len(arrays) != 1 or arrays[0].shape != (4,) or arrays[0].dtype != np.float32:
            return False
        return bool(reading_checks(arrays[0][None], np.array([site]))[1][0])

    return ok


def clearing_layout(message: Message) -> bool:
    """Whether a clearing is ``[winners (K,), kW (K,), price (K,)]`` float32, with winners whole
    numbers >= 0, kW >= 0 and prices in [0, 1] (:mod:`fleet.sim.market`)."""
    arrays = message.arrays
    if len(arrays) != 3 or any(a.dtype != np.float32 or a.ndim != 1 or a.shape != arrays[0].shape for a in arrays):
        return False
    winners, kw, price = arrays
    return bool(
        (winners >= 0).all()
        and (winners == np.round(winners)).all()
        and (kw >= 0).all()
        and (price <= 1).all()
        and (price >= 0).all()
    )


class InboundFilter:
    """Accepts the messages of ``topics`` (topic -> who publishes there) that pass the checks;
    ``layouts`` gives, per kind, the check of a message's arrays."""

    def __init__(
        self,
        topics: dict[str, Sender],
        layouts: dict[str, Callable[[Message], bool]],
        counters: Counters,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.topics, self.layouts, self.counters, self.max_bytes = topics, layouts, counters, max_bytes
        self.dedup = SeqDeduplicator()

    def check(self, received: Received) -> Accepted | None:
        """The message if it passes, else None (and the reason counted)."""
        c = self.counters
        sender = self.topics.get(received.topic)
        if sender is None:
            c.unexpected += 1
            return None
        try:
            message = decode(received.payload, self.max_bytes)
        except WireError:
            c.malformed += 1
            return None
        if message.kind != Kind[sender.kind.upper()] or not self.layouts[sender.kind](message):
            c.malformed += 1
            return None
        if sender.index is not None and message.sender != sender.index:
            c.unexpected += 1
            return None
        if (
            received.qos == 1
            and not self.dedup.accept(np.zeros(1, np.int64), np.array([message.sender]), np.array([message.seq]))[0]
        ):
            c.duplicates += 1
            return None
        c.received += 1
        c.received_bytes += len(received.payload)
        return Accepted(sender, message, received.arrived_at)
