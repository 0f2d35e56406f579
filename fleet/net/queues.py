"""FIFO single-server queues, computed in bulk.

A link direction or a broker serves messages one at a time, first come first served: a
message departs at ``max(ready, previous departure) + service``. These functions compute the
departures of a whole batch of messages at once:

- :func:`fifo_departures`: many queues (one per endpoint); a loop over the rank of a message
  within its queue, vectorized across queues, except that queues holding more than
  ``BIG_QUEUE`` messages (e.g. a collector receiving from every device) use the closed form;
- :func:`single_server_departures`: one queue, many messages, in closed form.

:func:`iter_ranks` is the grouping step they share with other per-endpoint sequential
processes, and :func:`as_vector` checks the shape of an argument where it enters.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

BIG_QUEUE = 32
"""Queues with more messages than this in one batch are computed in closed form."""


def as_vector(name: str, value: ArrayLike, n: int, dtype: DTypeLike = float) -> np.ndarray:
    """``value`` as a new array of shape (n,); a scalar is repeated ``n`` times.

    Raises ``ValueError`` naming the argument and the expected shape otherwise.
    """
    array = np.asarray(value, dtype=dtype)
    if array.ndim == 0:
        return np.full(n, array, dtype=dtype)
    if array.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {array.shape}")
    return array.copy()


def iter_ranks(sorted_keys: np.ndarray) -> Iterator[np.ndarray]:
    """Positions of the 0th, 1st, 2nd... element of every run of equal keys.

    ``sorted_keys`` (M,) is grouped (equal keys adjacent, e.g. sorted). Yields, for
    r = 0, 1, ..., the positions (K_r,) of the r-th element of every group that has more
    than r elements. Within one yield the positions belong to distinct groups, so per-group
    state can be read and written with fancy indexing.
    """
    m = len(sorted_keys)
    if m == 0:
        return
    starts = np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))
    sizes = np.diff(np.append(starts, m))
    by_size = np.argsort(-sizes, kind="stable")
    starts, sizes = starts[by_size], sizes[by_size]
    for rank in range(sizes[0]):
        yield starts[: np.searchsorted(-sizes, -rank, side="left")] + rank


def fifo_departures(queue: ArrayLike, ready: ArrayLike, service: ArrayLike, free_at: np.ndarray) -> np.ndarray:
    """Departure times from FIFO single-server queues, one server per queue id.

    Messages of a queue are served in order of ``ready``, ties broken by their index; a
    message departs at ``max(ready, previous departure on its queue, free_at[queue]) +
    service``. ``free_at`` (Q,) float is updated in place to each used queue's last departure.

    Shapes: ``queue`` (M,) int in ``[0, Q)``, ``ready`` (M,), ``service`` (M,); returns (M,).
    """
    queue = np.asarray(queue, dtype=np.intp)
    m = len(queue)
    ready = as_vector("ready", ready, m)
    service = as_vector("service", service, m)
    if m == 0:
        return np.empty(0)
    if m == 1:  # nothing to order: the recursion below, once
        free_at[queue[0]] = max(ready[0], free_at[queue[0]]) + service[0]
        return free_at[queue]
    order = np.lexsort((ready, queue))
    q, r, s = queue[order], ready[order], service[order]
    depart = np.empty(m)
    starts = np.flatnonzero(np.concatenate(([True], q[1:] != q[:-1])))
    ends = np.append(starts[1:], m)
    big = ends - starts > BIG_QUEUE
    for a, b in zip(starts[big], ends[big]):
        depart[a:b], free_at[q[a]] = single_server_departures(r[a:b], s[a:b], free_at[q[a]])
    small = np.flatnonzero(np.repeat(~big, ends - starts))
    for rank, pos in enumerate(iter_ranks(q[small])):
        at = small[pos]
        before = free_at[q[at]] if rank == 0 else depart[at - 1]
        depart[at] = np.maximum(r[at], before) + s[at]
    last = small[np.append(q[small][1:] != q[small][:-1], True)] if len(small) else small
    free_at[q[last]] = depart[last]
    out = np.empty(m)
    out[order] = depart
    return out


def single_server_departures(ready: ArrayLike, service: ArrayLike, free_at: float) -> tuple[np.ndarray, float]:
    """Departure times from one FIFO server, and the time it becomes free afterwards.

    Messages are served in order of ``ready`` (ties by index). With the messages sorted and
    ``C_i`` the cumulative service up to and including message ``i``, the recursion
    ``d_i = max(r_i, d_{i-1}) + s_i`` (``d_{-1} = free_at``) has the closed form
    ``d_i = C_i + max(free_at, max_{j<=i} (r_j - C_{j-1}))``.

    Shapes: ``ready`` (M,), ``service`` (M,); returns departures (M,) in the caller's order
    and the new ``free_at`` (the last departure, or ``free_at`` if M = 0).
    """
    ready = np.asarray(ready, dtype=float)
    service = as_vector("service", service, len(ready))
    order = np.argsort(ready, kind="stable")
    cumulative = np.cumsum(service[order])
    slack = np.maximum.accumulate(ready[order] - (cumulative - service[order]))
    depart = np.empty(len(ready))
    depart[order] = cumulative + np.maximum(free_at, slack)
    return depart, float(depart[order[-1]]) if len(ready) else float(free_at)
