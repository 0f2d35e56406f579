"""One direction of the links between N endpoints and the broker.

A message of ``b`` payload bytes on endpoint ``i``:

1. waits behind earlier messages of the same endpoint (FIFO, state kept across calls);
2. is serialized for ``airtime = 8 (b + overhead_i) / bps_i`` seconds and departs when done;
   with a duty cycle below 1 the endpoint then stays silent for ``airtime (1/duty - 1)``;
3. arrives ``latency_i + Exponential(mean jitter_i)`` after it departs, unless lost:
   by the endpoint's loss chain (in order of departure) or because the endpoint is down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from fleet.net.loss import LossProcess
from fleet.net.profiles import LinkProfile
from fleet.net.queues import as_vector, fifo_departures
from fleet.statefile import attrs_state, load_attrs


@dataclass
class Transmission:
    """What happened to M messages sent on a link direction; every field has shape (M,)."""

    depart: np.ndarray
    """Time the last bit left the sender (end of serialization), seconds."""
    arrive: np.ndarray
    """Time the message reaches the other end (meaningless where ``lost``), seconds."""
    lost: np.ndarray
    """Whether the message never arrives, bool."""
    airtime_s: np.ndarray
    """Serialization time on the radio (or wire), seconds."""


class LinkDirection:
    """The uplinks (device -> broker) or the downlinks (broker -> device) of N endpoints.

    Shapes: ``latency_s``, ``jitter_s``, ``bps``, ``overhead_bytes``, ``duty_cycle`` (N,)
    (a scalar is repeated); ``loss`` has N endpoints. :attr:`free_at` (N,) is the time each
    endpoint's transmitter is next free.
    """

    def __init__(
        self,
        latency_s: ArrayLike,
        jitter_s: ArrayLike,
        bps: ArrayLike,
        overhead_bytes: ArrayLike,
        loss: LossProcess,
        rng: np.random.Generator,
        duty_cycle: ArrayLike = 1.0,
    ) -> None:
        n = len(loss.bad)
        self.latency_s = as_vector("latency_s", latency_s, n)
        self.jitter_s = as_vector("jitter_s", jitter_s, n)
        self.bps = as_vector("bps", bps, n)
        self.overhead_bytes = as_vector("overhead_bytes", overhead_bytes, n, dtype=np.int64)
        self.duty_cycle = as_vector("duty_cycle", duty_cycle, n)
        if np.any(self.bps <= 0) or np.any(self.duty_cycle <= 0) or np.any(self.duty_cycle > 1):
            raise ValueError("bps must be positive and duty_cycle in (0, 1] for every endpoint")
        self.loss = loss
        self.rng = rng
        self.free_at = np.zeros(n)
        """Time each endpoint's transmitter is next free, (N,) seconds."""

    STATE = ("free_at", "rng", "loss")
    """What changes as messages go (:mod:`fleet.statefile`)."""

    def state_dict(self) -> dict:
        return attrs_state(self, self.STATE)

    def load_state_dict(self, state: dict) -> None:
        load_attrs(self, state, self.STATE)

    @classmethod
    def from_profiles(
        cls,
        profiles: Sequence[LinkProfile],
        profile_of: ArrayLike,
        direction: Literal["up", "down"],
        rng: np.random.Generator,
    ) -> LinkDirection:
        """One direction for N endpoints; endpoint ``i`` uses ``profiles[profile_of[i]]``.

        Shapes: ``profile_of`` (N,) int.
        """
        profile_of = np.asarray(profile_of, dtype=np.intp)

        def column(values: list[float]) -> np.ndarray:
            return np.asarray(values, dtype=float)[profile_of]

        bps = [p.up_bps if direction == "up" else p.down_bps for p in profiles]
        return cls(
            latency_s=column([p.latency_s for p in profiles]),
            jitter_s=column([p.jitter_s for p in profiles]),
            bps=column(bps),
            overhead_bytes=column([p.overhead_bytes for p in profiles]),
            loss=LossProcess.from_configs([p.loss for p in profiles], profile_of, rng),
            rng=rng,
            duty_cycle=column([p.duty_cycle for p in profiles]),
        )

    def send(
        self, ready: ArrayLike, endpoint: ArrayLike, size_bytes: ArrayLike, down: np.ndarray | None = None
    ) -> Transmission:
        """Send M messages, each ready to go at ``ready`` on ``endpoint``.

        Shapes: ``ready`` (M,) seconds, ``endpoint`` (M,) int, ``size_bytes`` (M,) int
        payload bytes, ``down`` (N,) bool: endpoints whose link is cut or that are offline
        (their messages still take their turn in the queue and the loss chain, then are lost).
        """
        endpoint = np.asarray(endpoint, dtype=np.intp)
        m = len(endpoint)
        size_bytes = as_vector("size_bytes", size_bytes, m, dtype=np.int64)
        airtime = 8.0 * (size_bytes + self.overhead_bytes[endpoint]) / self.bps[endpoint]
        occupancy = airtime / self.duty_cycle[endpoint]
        depart = fifo_departures(endpoint, ready, occupancy, self.free_at) - (occupancy - airtime)
        arrive = depart + self.latency_s[endpoint] + self._jitter(endpoint)
        by_departure = np.argsort(depart, kind="stable")
        lost = np.empty(m, dtype=bool)
        lost[by_departure] = self.loss.lost(endpoint[by_departure])
        if down is not None:
            lost |= as_vector("down", down, len(self.free_at), dtype=bool)[endpoint]
        return Transmission(depart=depart, arrive=arrive, lost=lost, airtime_s=airtime)

    def _jitter(self, endpoint: np.ndarray) -> np.ndarray:
        """Exponential jitter (M,) with each endpoint's mean; nothing drawn where the mean is 0."""
        mean = self.jitter_s[endpoint]
        jitter = np.zeros(len(endpoint))
        positive = mean > 0
        jitter[positive] = mean[positive] * self.rng.standard_exponential(np.count_nonzero(positive))
        return jitter
