"""Vectorized topic routing for the fleet namespace ``fleet/<site>/<device>/<kind>``.

A broker delivers a message to every subscriber with at least one matching filter, once
(MQTT 5, 4.7: overlapping subscriptions give one delivery). :class:`TopicIndex` does this
for a whole round of M messages at once. It sorts each filter into one of three classes
when it is subscribed:

- *pinned* filters name one device (``fleet/s0/d00012/consensus``, ``fleet/s0/d00012/+``):
  they go into a CSR table keyed by ``(sender device, kind)``, expanded with ``np.repeat``;
- *patterns* leave the site or the device open (``fleet/+/+/telemetry``, ``fleet/#``):
  each distinct pattern is compared level by level against the M messages' level ids;
- filters that cannot match any topic of this fleet route nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from fleet.errors import ConfigError
from fleet.mqtt.topics import KINDS, validate_level, validate_topic_filter

ANY = -1
"""Level id of a ``+`` (or ``#``-covered) level in a compiled filter."""

_KIND_IDS = {kind: i for i, kind in enumerate(KINDS)}


class _Levels(NamedTuple):
    """A filter compiled against the fleet: one id per level after ``fleet``, or ANY."""

    site: int
    device: int
    kind: int


class _Tables(NamedTuple):
    """Routing tables, rebuilt lazily after the subscriptions change."""

    subscribers: np.ndarray
    """(S,) distinct subscriber ids, sorted; routing works on their ranks."""
    indptr: np.ndarray
    """(N * len(KINDS) + 1,) CSR row pointers; row ``device * len(KINDS) + kind``."""
    pinned: np.ndarray
    """(P,) subscriber ranks of pinned filters, sorted within each row."""
    patterns: list[tuple[_Levels, np.ndarray]]
    """Distinct patterns, each with the ranks (sorted) of its subscribers."""


def _expand_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + c)`` for each start s and count c, shape (sum(counts),)."""
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(starts, counts) + offsets


class TopicIndex:
    """Who receives which message, for N devices publishing ``fleet/<site>/<name>/<kind>``.

    Device ``i`` publishes as ``fleet/{device_sites[i]}/{device_names[i]}/<kind>``; two devices
    may not share a topic. Subscribers are ints >= 0 (devices use their index; ids >= N stand
    for other clients, e.g. a cloud collector).
    """

    def __init__(self, device_sites: Sequence[str], device_names: Sequence[str]):
        if len(device_sites) != len(device_names):
            raise ConfigError(
                f"{len(device_sites)} device sites but {len(device_names)} device names; give one of each per device"
            )
        for site, name in zip(device_sites, device_names):
            validate_level(site, "site")
            validate_level(name, "device name")
        sites, self._site = np.unique(np.asarray(device_sites, dtype=str), return_inverse=True)
        names, self._name = np.unique(np.asarray(device_names, dtype=str), return_inverse=True)
        self._site_ids = {s: i for i, s in enumerate(sites.tolist())}
        self._name_ids = {n: i for i, n in enumerate(names.tolist())}
        self._device_of: dict[tuple[int, int], int] = {}
        for i, key in enumerate(zip(self._site.tolist(), self._name.tolist())):
            first = self._device_of.setdefault(key, i)
            if first != i:
                raise ConfigError(
                    f"devices {first} and {i} both publish as fleet/{device_sites[i]}/{device_names[i]}/..."
                )
        self.n_devices = len(device_names)
        self._subscriptions: dict[tuple[int, str], _Levels | None] = {}
        self._tables: _Tables | None = None

    # --- subscriptions ------------------------------------------------------------------

    def subscribe(self, subscriber: int, filter: str) -> None:
        """Add ``filter`` for ``subscriber``; subscribing the same pair again changes nothing."""
        validate_topic_filter(filter)
        if not (isinstance(subscriber, (int, np.integer)) and subscriber >= 0):
            raise ValueError(f"subscriber must be an int >= 0, got {subscriber!r}")
        key = (int(subscriber), filter)
        if key not in self._subscriptions:
            self._subscriptions[key] = self._compile(filter)
            self._tables = None

    def unsubscribe(self, subscriber: int, filter: str) -> None:
        """Remove ``filter`` for ``subscriber``; a pair that was not subscribed is ignored (as in MQTT)."""
        validate_topic_filter(filter)
        key = (int(subscriber), filter)
        if key in self._subscriptions:
            del self._subscriptions[key]
            self._tables = None

    def _compile(self, filter: str) -> _Levels | None:
        """The level ids ``filter`` requires of a fleet topic, or None if it matches none."""
        levels = filter.split("/")
        if levels[-1] == "#":
            if len(levels) > 5:
                return None
            levels = levels[:-1] + ["+"] * (5 - len(levels))
        if len(levels) != 4 or levels[0] not in ("fleet", "+"):
            return None
        ids = []
        for level, lookup in zip(levels[1:], (self._site_ids, self._name_ids, _KIND_IDS)):
            if level != "+" and level not in lookup:
                return None
            ids.append(ANY if level == "+" else lookup[level])
        compiled = _Levels(*ids)
        if compiled.site != ANY and compiled.device != ANY and (compiled.site, compiled.device) not in self._device_of:
            return None
        return compiled

    # --- lookup tables (rebuilt lazily) -----------------------------------------------------

    def _build(self) -> _Tables:
        """Sort the current subscriptions into the pinned CSR table and the distinct patterns."""
        subscribers = np.unique(np.array([s for s, _ in self._subscriptions], dtype=np.int64))
        rank = {s: r for r, s in enumerate(subscribers.tolist())}
        pinned_keys: list[int] = []
        pinned_ranks: list[int] = []
        patterns: dict[_Levels, list[int]] = {}
        for (subscriber, _), levels in self._subscriptions.items():
            if levels is None:
                continue
            if levels.site == ANY or levels.device == ANY:
                patterns.setdefault(levels, []).append(rank[subscriber])
                continue
            device = self._device_of[(levels.site, levels.device)]
            kinds = range(len(KINDS)) if levels.kind == ANY else (levels.kind,)
            pinned_keys.extend(device * len(KINDS) + k for k in kinds)
            pinned_ranks.extend(rank[subscriber] for _ in kinds)
        # one entry per (device, kind, subscriber), sorted by key then subscriber rank
        n_subscribers = max(len(subscribers), 1)
        entries = np.unique(
            np.array(pinned_keys, dtype=np.int64) * n_subscribers + np.array(pinned_ranks, dtype=np.int64)
        )
        counts = np.bincount(entries // n_subscribers, minlength=self.n_devices * len(KINDS))
        indptr = np.concatenate([[0], np.cumsum(counts)])
        pattern_list = [(levels, np.unique(np.array(ranks, dtype=np.int64))) for levels, ranks in patterns.items()]
        return _Tables(subscribers, indptr, entries % n_subscribers, pattern_list)

    # --- routing -----------------------------------------------------------------------------

    def route(self, sender: np.ndarray, kind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Deliveries for M messages: message ``j`` is sender ``sender[j]`` publishing ``KINDS[kind[j]]``.

        ``sender`` (M,) device indices in [0, N); ``kind`` (M,) indices into :data:`KINDS`.
        Returns ``(msg, subscriber)``, both (D,) int64: every pair where one of the subscriber's
        filters matches the message's topic, once, sorted by message then subscriber.
        """
        sender, kind = self._check_messages(sender, kind)
        if self._tables is None:
            self._tables = self._build()
        subscribers, indptr, pinned, patterns = self._tables
        n_subscribers = max(len(subscribers), 1)
        # pinned filters: expand the CSR rows of each message's (sender, kind)
        row = sender * len(KINDS) + kind
        counts = indptr[row + 1] - indptr[row]
        keys = [np.repeat(np.arange(len(sender)), counts) * n_subscribers + pinned[_expand_ranges(indptr[row], counts)]]
        # patterns: compare level ids over all messages, then pair matches with subscribers
        for levels, ranks in patterns:
            hit = np.ones(len(sender), dtype=bool)
            for wanted, actual in (
                (levels.site, self._site[sender]),
                (levels.device, self._name[sender]),
                (levels.kind, kind),
            ):
                if wanted != ANY:
                    hit &= actual == wanted
            keys.append((np.flatnonzero(hit)[:, None] * n_subscribers + ranks[None, :]).ravel())
        # each array is strictly increasing (messages in order, then subscriber ranks in order):
        # a single non-empty one is already what np.unique would make of it
        nonempty = [k for k in keys if len(k)]
        unique = nonempty[0] if len(nonempty) == 1 else np.unique(np.concatenate(keys))
        return unique // n_subscribers, subscribers[unique % n_subscribers]

    def _check_messages(self, sender: np.ndarray, kind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sender, kind = np.asarray(sender), np.asarray(kind)
        if sender.ndim != 1 or kind.shape != sender.shape:
            raise ValueError(f"sender and kind must both have shape (M,), got {sender.shape} and {kind.shape}")
        if sender.size and (sender.min() < 0 or sender.max() >= self.n_devices):
            raise ValueError(
                f"sender must hold device indices in [0, {self.n_devices}), got values in [{sender.min()}, "
                f"{sender.max()}]"
            )
        if kind.size and (kind.min() < 0 or kind.max() >= len(KINDS)):
            raise ValueError(
                f"kind must hold indices into KINDS in [0, {len(KINDS)}), got values in [{kind.min()}, {kind.max()}]"
            )
        return sender.astype(np.int64), kind.astype(np.int64)
