"""Communication policies for learners that exchange flat parameter vectors: when and what to publish.

They are orthogonal to the learners. A learner holds one :class:`ParamPublisher` for its N
devices and, on the receiving side, one :class:`ParamReceiver` for its (receiver, sender)
edges. Per publish round the publisher decides, for all devices at once:

- **period**: only every ``period``-th learner update publishes;
- **event trigger**: a device publishes only when its parameters moved, relative to what it
  last published, by more than ``event_threshold``;
- **what**: a *dense* message (every entry) or a *sparse* top-k message (the k largest
  entries of what the receivers are missing, as indices and values); values in float32,
  float16 or int8. One round is one :class:`Publication` in one layout, so it is dense for
  every device publishing in it when any of them is due a dense message.

Wire convention: a dense message has one array, the values ``(P,)``; a sparse message has
two, indices ``(k,)`` as UINT32 and values ``(k,)``. Receivers tell them apart by the number
of arrays (``ParamReceiver.apply(edge, arrays, dense=len(arrays) == 1)``), so the two can
share a message kind.

Sparse messages are increments: the publisher keeps ``sent``, what its receivers have
reconstructed from everything it published (the values as they decode, quantization
included), and sends increments to it. A lost sparse message leaves that receiver's
reconstruction off until the sender's next dense message; ``full_every`` bounds how long.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from fleet.config import FiniteFloat, StrictModel
from fleet.mqtt.codec import DType, as_decoded, encoded_size


class CommConfig(StrictModel):
    """How a learner publishes its parameters."""

    period: int = Field(1, ge=1)
    """Publish on every ``period``-th learner update: updates 0, period, 2 * period, ..."""
    dtype: Literal["float32", "float16", "int8"] = "float32"
    """How values go on the wire; int8 is symmetric with one scale per message."""
    topk: float = Field(1.0, gt=0, le=1)
    """Fraction of the P entries a message carries, k = ceil(topk * P); 1.0 sends every entry (dense)."""
    error_feedback: bool = True
    """Top-k: entries not sent (and quantization error) stay owed and are sent in later messages."""
    event_threshold: FiniteFloat = Field(0.0, ge=0)
    """Publish only when ||θ - θ_last_sent|| > threshold * ||θ_last_sent|| (relative); 0 = always."""
    full_every: int = Field(0, ge=0)
    """Top-k: at least every n-th publish of a device is dense, so receivers resynchronise after losses; 0 = never."""

    @property
    def wire_dtype(self) -> DType:
        """The codec dtype of the values."""
        return DType[self.dtype.upper()]

    def k(self, p: int) -> int:
        """Entries in a sparse message of a P-entry vector (rounded so that 0.7 * 10 gives 7, not 8)."""
        return max(1, math.ceil(round(self.topk * p, 9)))

    def largest_message_bytes(self, p: int) -> int:
        """Encoded bytes of the largest message of a P-entry vector under this policy.

        That is the dense message (P values) unless top-k sparse messages (k indices and k
        values) are larger: top-k never makes the largest message smaller, since every device's
        first message is dense (and every ``full_every``-th, when set).
        """
        dense = encoded_size(self.wire_dtype, [(p,)])
        k = self.k(p)
        return dense if k >= p else max(dense, encoded_size([DType.UINT32, self.wire_dtype], [(k,), (k,)]))


@dataclass(frozen=True, eq=False)
class Publication:
    """What M senders publish in one round, in one layout: ``encode_batch(kind, sender, seq, t, arrays, dtypes)``.

    From a :class:`ParamPublisher`: dense ``arrays = [values (M, P) float32]``; sparse
    ``arrays = [indices (M, k) int64, values (M, k) float32]`` with ``dtypes = [UINT32, value
    dtype]``. Values are as computed, before quantization; the codec quantizes them.
    """

    sender: np.ndarray
    """(M,) int64 publishing endpoints."""
    arrays: list[np.ndarray]
    """Each (M, ...)."""
    dtypes: list[DType]
    """One per array."""
    dense: bool
    """Whether the arrays carry every entry (receivers replace) rather than top-k increments."""


class ParamPublisher:
    """Decides what each of N devices publishes of its P parameters; state for all devices at once.

    One round has one layout, so when any publishing device is due a dense message (its
    first publish, or its ``full_every``-th since its last dense one) every device publishing
    in that round sends dense: each device is dense at least every ``full_every`` publishes.
    """

    def __init__(self, cfg: CommConfig, n: int, p: int):
        if n < 0 or p < 1:
            raise ValueError(f"need n >= 0 devices and p >= 1 parameters, got n={n}, p={p}")
        self.cfg, self.n, self.p = cfg, n, p
        self.reconstructed = np.zeros((n, p), np.float32) if cfg.k(p) < p else None
        """(N, P) under a top-k policy, :attr:`sent`; None under a dense one, which needs no state for it."""
        self.last = np.zeros((n, p), np.float32)
        """(N, P) each device's parameters when it last published."""
        self.publishes = np.zeros(n, np.int64)
        """(N,) publishes so far per device."""
        self.since_dense = np.zeros(n, np.int64)
        """(N,) sparse publishes per device since its last dense one."""
        self.suppressed = np.zeros(n, np.int64)
        """(N,) publish rounds in which the event trigger held an active device back."""

    _STATE = ("reconstructed", "last", "publishes", "since_dense", "suppressed")

    def state_dict(self) -> dict[str, np.ndarray]:
        """The arrays that make up the state (:mod:`fleet.statefile`)."""
        from fleet.statefile import attrs_state  # not at the top: reading a config needs no torch

        return attrs_state(self, self._STATE)

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state_dict`; a :class:`~fleet.statefile.StateMismatch` if an array does not fit."""
        from fleet.statefile import load_attrs

        load_attrs(self, state, self._STATE)

    def reset(self, rows: np.ndarray) -> None:
        """Devices ``rows`` (R,) are new: as if they had never published."""
        for name in self._STATE:
            if (value := getattr(self, name)) is not None:
                value[rows] = 0

    @property
    def sent(self) -> np.ndarray:
        """(N, P) what receivers have reconstructed of each device from all it published (as
        decoded). Under a dense policy that is its last message, ``last`` as decoded."""
        return as_decoded(self.last, self.cfg.wire_dtype) if self.reconstructed is None else self.reconstructed

    @property
    def residual(self) -> np.ndarray:
        """(N, P) what receivers still miss of each device's parameters at its last publish."""
        return self.last - self.sent

    def outgoing(self, update_index: int, params: np.ndarray, active: np.ndarray) -> Publication | None:
        """What the devices publish after learner update ``update_index``, or None if none does.

        ``params`` (N, P) float32, ``active`` (N,) bool: only active devices publish, on every
        ``period``-th update, and only those that moved more than the event threshold (a
        device's first publish always goes). Updates ``sent``, ``last`` and the counters.
        """
        params, active = self._checked(params, active)
        if update_index % self.cfg.period:
            return None
        publish = active & ((self.publishes == 0) | self._moved(params))
        self.suppressed += active & ~publish
        dev = np.flatnonzero(publish)
        if len(dev) == 0:
            return None
        dense = bool(self._dense_due()[dev].any())
        params = params[dev]
        pub = self._dense(dev, params) if dense else self._sparse(dev, params)
        self.last[dev] = params
        self.publishes[dev] += 1
        self.since_dense[dev] = 0 if dense else self.since_dense[dev] + 1
        return pub

    # --- decisions ------------------------------------------------------------------------

    def _checked(self, params: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        params, active = np.asarray(params), np.asarray(active)
        if params.shape != (self.n, self.p) or params.dtype.kind != "f":
            raise ValueError(
                f"params must be floats of shape (N, P) = ({self.n}, {self.p}), got {params.dtype} {params.shape}"
            )
        if active.shape != (self.n,) or active.dtype != bool:
            raise ValueError(f"active must be bool of shape (N,) = ({self.n},), got {active.dtype} {active.shape}")
        params = params.astype(np.float32, copy=False)
        if params.size and not (
            np.isfinite(params.min()) and np.isfinite(params.max())
        ):  # a NaN propagates through both
            raise ValueError(f"params of device {np.flatnonzero(~np.isfinite(params).all(axis=1))[0]} are not finite")
        return params, active

    def _moved(self, params: np.ndarray) -> np.ndarray:
        """(N,) whether each device moved more than the event threshold since it last published."""
        if self.cfg.event_threshold == 0:
            return np.ones(self.n, bool)
        change = np.linalg.norm(params - self.last, axis=1)
        return change > self.cfg.event_threshold * np.linalg.norm(self.last, axis=1)

    def _dense_due(self) -> np.ndarray:
        """(N,) whether a device's next publish must be dense."""
        if self.cfg.k(self.p) >= self.p:
            return np.ones(self.n, bool)
        full = self.since_dense >= self.cfg.full_every - 1 if self.cfg.full_every else False
        return (self.publishes == 0) | full

    # --- messages -------------------------------------------------------------------------

    def _dense(self, dev: np.ndarray, values: np.ndarray) -> Publication:
        """Devices ``dev`` (M,) send all of ``values`` (M, P); receivers replace their reconstruction."""
        wire = self.cfg.wire_dtype
        if self.reconstructed is not None:
            self.reconstructed[dev] = as_decoded(values, wire)
        return Publication(dev, [values], [wire], True)

    def _sparse(self, dev: np.ndarray, params: np.ndarray) -> Publication:
        """Devices ``dev`` (M,) send the k largest entries of what receivers miss of ``params`` (M, P).

        With error feedback that is ``params - sent`` (the change since the last publish plus
        everything owed from before); without, only the change since the last publish, and
        what is not sent of it is dropped.
        """
        wire, k = self.cfg.wire_dtype, self.cfg.k(self.p)
        reference = self.reconstructed if self.cfg.error_feedback else self.last
        delta = params - reference[dev]
        index = np.sort(np.argpartition(np.abs(delta), self.p - k, axis=1)[:, self.p - k :], axis=1)
        values = np.take_along_axis(delta, index, axis=1)
        self.reconstructed[dev[:, None], index] += as_decoded(values, wire)
        return Publication(dev, [index, values], [DType.UINT32, wire], False)


class ParamReceiver:
    """Reconstructed parameters per (receiver, sender) edge from the dense and sparse messages received.

    Messages must be applied once each (de-duplicate QoS 1 deliveries first) and in the
    order they were published. A lost sparse message is not detected here: the edge's
    reconstruction stays off by what it carried until the sender's next dense message.
    """

    def __init__(self, n_edges: int, p: int):
        self.p = p
        self.params = np.zeros((n_edges, p), np.float32)
        """(E, P) each edge's reconstruction of its sender's parameters."""
        self.synced = np.zeros(n_edges, bool)
        """(E,) whether the edge has received a dense message (before that its reconstruction means nothing)."""

    _STATE = ("params", "synced")

    def state_dict(self) -> dict[str, np.ndarray]:
        """The arrays that make up the state (:mod:`fleet.statefile`)."""
        from fleet.statefile import attrs_state  # not at the top: reading a config needs no torch

        return attrs_state(self, self._STATE)

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state_dict`; a :class:`~fleet.statefile.StateMismatch` if an array does not fit."""
        from fleet.statefile import load_attrs

        load_attrs(self, state, self._STATE)

    def apply(self, edge: np.ndarray, arrays: list[np.ndarray], dense: bool) -> tuple[np.ndarray, np.ndarray]:
        """Apply D decoded messages on edges ``edge`` (D,), in row order.

        ``arrays`` as :func:`~fleet.mqtt.codec.decode_batch` gives them for the D valid rows.
        On the wire a dense message has one array and a sparse one two, so a caller passes
        ``dense=len(arrays) == 1``. Dense ``[values (D, P)]`` replaces the edge's reconstruction
        (the last row wins for an edge given twice); sparse ``[indices (D, k), values (D, k)]``
        adds the values at the indices. Returns the edges' reconstructions (D, P) float32 and
        ``ok`` (D,): the edge is synced and the message had indices in ``[0, P)`` (a message
        with others is ignored).
        """
        edge = np.asarray(edge)
        n_edges, d = len(self.params), len(edge)
        if edge.ndim != 1 or edge.dtype.kind not in "iu" or (d and not 0 <= edge.min() <= edge.max() < n_edges):
            raise ValueError(f"edge must be integers in [0, {n_edges}) of shape (D,), got {edge!r}")
        shapes = [np.shape(a) for a in arrays]
        if dense and len(arrays) == 1 and shapes[0] == (d, self.p):
            keep = last_per_edge(edge)
            self.params[edge[keep]] = arrays[0][keep]
            self.synced[edge[keep]] = True
            ok = np.ones(d, bool)
        elif not dense and len(arrays) == 2 and len(shapes[0]) == 2 and shapes[0] == shapes[1] and shapes[0][0] == d:
            index, values = arrays
            ok = ((index >= 0) & (index < self.p)).all(axis=1)
            np.add.at(self.params, (edge[ok, None], index[ok]), values[ok].astype(np.float32))
        else:
            expected = f"[values ({d}, {self.p})]" if dense else f"[indices ({d}, k), values ({d}, k)]"
            raise ValueError(f"a {'dense' if dense else 'sparse'} message needs arrays {expected}, got shapes {shapes}")
        return self.params[edge], ok & self.synced[edge]


def last_per_edge(edge: np.ndarray) -> np.ndarray:
    """Index of the last occurrence of each distinct edge in ``edge`` (D,), in the order of the edges."""
    return len(edge) - 1 - np.unique(edge[::-1], return_index=True)[1]
