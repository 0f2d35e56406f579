"""Duplicate suppression for QoS 1 receivers, by (receiver, sender, seq).

QoS 1 delivers at least once, so a receiver may see a message again after a retransmission.
:class:`SeqDeduplicator` keeps, per (receiver, sender) pair, the highest seq seen and a
64-bit window below it (bit ``d`` set: seq ``top - d`` was seen), like the IPsec anti-replay
window (RFC 4303, 3.4.3). Memory is 24 bytes per pair, however long the stream.
"""

from __future__ import annotations

import numpy as np

from fleet.statefile import StateMismatch, array, expect_keys, within

WINDOW = 64
"""Seqs more than ``WINDOW - 1`` below the highest seen are rejected as duplicates."""

_NONE_SEEN = -1
_UINT32_MAX = 2**32 - 1


def _occurrence(slots: np.ndarray) -> np.ndarray:
    """For each entry (D,), how many earlier entries have the same slot."""
    order = np.argsort(slots, kind="stable")
    ordered = slots[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    counts = np.diff(np.r_[starts, len(slots)])
    rank = np.empty(len(slots), dtype=np.int64)
    rank[order] = np.arange(len(slots)) - np.repeat(starts, counts)
    return rank


class SeqDeduplicator:
    """Accepts each (receiver, sender, seq) once.

    A seq ``WINDOW`` or more below the highest seq seen from that sender by that receiver
    is rejected even if it was never seen: a message that late is treated as a duplicate.
    Seqs do not wrap around (uint32 seqs last 136 years at one message per second).
    """

    def __init__(self) -> None:
        self._keys = np.empty(0, dtype=np.int64)  # (P,) receiver << 32 | sender, sorted
        self._top = np.empty(0, dtype=np.int64)  # (P,) highest seq seen, or _NONE_SEEN
        self._seen = np.empty(0, dtype=np.uint64)  # (P,) bit d: seq top - d was seen

    def __len__(self) -> int:
        """Number of (receiver, sender) pairs tracked."""
        return len(self._keys)

    def state_dict(self) -> dict[str, np.ndarray]:
        """``keys`` (P,) int64 sorted, ``top`` (P,) int64 and ``seen`` (P,) uint64, one entry per pair."""
        return {"keys": self._keys, "top": self._top, "seen": self._seen}

    def load_state_dict(self, state: dict) -> None:
        expect_keys(state, ("keys", "top", "seen"))
        with within("keys"):
            keys = array(state["keys"], dtype=np.dtype(np.int64), shape=(None,)).copy()
            if np.any(np.diff(keys) <= 0):
                raise StateMismatch("", "must be sorted, each pair once")
        with within("top"):
            top = array(state["top"], dtype=np.dtype(np.int64), shape=keys.shape).copy()
        with within("seen"):
            seen = array(state["seen"], dtype=np.dtype(np.uint64), shape=keys.shape).copy()
        self._keys, self._top, self._seen = keys, top, seen

    def accept(self, receiver: np.ndarray, sender: np.ndarray, seq: np.ndarray) -> np.ndarray:
        """(D,) bool: True where (receiver, sender, seq) is new, the first in array order winning.

        ``receiver`` (D,) ints in [0, 2**31); ``sender`` and ``seq`` (D,) ints in [0, 2**32).
        """
        receiver, sender, seq = self._check(receiver, sender, seq)
        slots = self._slots(receiver << 32 | sender)
        occurrence = _occurrence(slots)
        accepted = np.zeros(len(seq), dtype=bool)
        # entries of one pair in one call are applied in array order: one per pass
        for n in range(occurrence.max(initial=-1) + 1):
            at = np.flatnonzero(occurrence == n)
            accepted[at] = self._apply(slots[at], seq[at])
        return accepted

    def _slots(self, keys: np.ndarray) -> np.ndarray:
        """State index of each key (D,), adding pairs not seen before."""
        new = np.setdiff1d(keys, self._keys)
        if len(new):
            where = np.searchsorted(self._keys, new)
            self._keys = np.insert(self._keys, where, new)
            self._top = np.insert(self._top, where, _NONE_SEEN)
            self._seen = np.insert(self._seen, where, np.uint64(0))
        return np.searchsorted(self._keys, keys)

    def _apply(self, slots: np.ndarray, seq: np.ndarray) -> np.ndarray:
        """Accept or reject one seq per slot (slots distinct), updating the windows; (K,) bool."""
        top, seen = self._top[slots], self._seen[slots]
        ahead = seq > top  # also every seq of a pair with none seen
        shift = np.clip(seq - top, 0, WINDOW).astype(np.uint64)
        shifted = np.where(shift < WINDOW, seen << np.minimum(shift, WINDOW - 1), np.uint64(0))
        behind = np.where(ahead, 0, top - seq).astype(np.uint64)
        in_window = ~ahead & (behind < WINDOW)
        bit = np.uint64(1) << np.minimum(behind, WINDOW - 1)
        fresh = ahead | (in_window & ((seen & bit) == 0))
        self._top[slots] = np.where(ahead, seq, top)
        self._seen[slots] = np.where(ahead, shifted | np.uint64(1), np.where(fresh, seen | bit, seen))
        return fresh

    @staticmethod
    def _check(receiver: np.ndarray, sender: np.ndarray, seq: np.ndarray) -> tuple[np.ndarray, ...]:
        arrays = [np.asarray(a) for a in (receiver, sender, seq)]
        for name, a, high in zip(("receiver", "sender", "seq"), arrays, (2**31 - 1, _UINT32_MAX, _UINT32_MAX)):
            if a.dtype.kind not in "iu" or a.shape != arrays[0].shape or a.ndim != 1:
                raise ValueError(
                    f"{name} must be an integer array of shape (D,) like receiver, got {a.dtype} {a.shape}"
                )
            if a.size and (a.min() < 0 or a.max() > high):
                raise ValueError(f"{name} must lie in [0, {high}], got values in [{a.min()}, {a.max()}]")
        return tuple(a.astype(np.int64) for a in arrays)
