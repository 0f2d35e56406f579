"""A clock shared by the machines of a mixed fleet: scenario time from a common wall-clock epoch.

A real-time run (``fleet run --realtime``) and the edge agents that join it (``fleet agent
--epoch``) each run a ``simpy.rt.RealtimeEnvironment`` with ``factor = 1 / speedup``; pinned to
the same ``epoch`` (a UNIX time), scenario time ``t`` happens everywhere at wall time
``epoch + t / speedup``. The machines' wall clocks are assumed to agree (NTP); an error of
``e`` seconds between two of them is ``e * speedup`` seconds of scenario time.
"""

from __future__ import annotations

import math
import time

import simpy.rt

from fleet.errors import ConfigError


def check_epoch(epoch: float | None) -> None:
    """Raise :class:`ConfigError` unless ``epoch`` is None or a finite, positive UNIX time."""
    if epoch is not None and not (math.isfinite(epoch) and epoch > 0):
        raise ConfigError(f"--epoch must be a UNIX time in seconds (e.g. $(date +%s)), got {epoch!r}")


def shared_time(epoch: float, speedup: float) -> float:
    """Scenario time now on the shared clock (negative before the epoch)."""
    return (time.time() - epoch) * speedup


def pin(env: simpy.rt.RealtimeEnvironment, epoch: float, speedup: float) -> None:
    """Pin ``env`` (whose factor is ``1 / speedup``) to the shared clock: its time ``t`` is due at
    wall time ``epoch + t / speedup``. Before the epoch it waits; behind the shared clock (not
    strict) it runs its events without waiting until it caught up."""
    env.real_start = time.monotonic() - (time.time() - epoch) + env.env_start / speedup


def realtime_environment(speedup: float, epoch: float, initial_time: float = 0.0) -> simpy.rt.RealtimeEnvironment:
    """A non-strict real-time environment at ``speedup`` pinned to ``epoch`` (see :func:`pin`)."""
    env = simpy.rt.RealtimeEnvironment(initial_time=initial_time, factor=1.0 / speedup, strict=False)
    pin(env, epoch, speedup)
    return env


def clock_at(env: simpy.rt.RealtimeEnvironment, monotonic: float, speedup: float) -> float:
    """``env``'s time at ``time.monotonic()`` = ``monotonic`` (not later than ``env.now``), e.g.
    when a message arrived on a transport's network thread."""
    return min(env.now, env.env_start + (monotonic - env.real_start) * speedup)
