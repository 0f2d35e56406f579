"""Devices going offline and coming back, and scheduled link cuts.

:class:`Churn` models each device as an independent two-state continuous-time Markov chain:
online devices fail at rate ``failure_rate_per_s`` (exponential uptimes), offline devices
come back after exponential downtimes of mean ``mean_downtime_s``. In the long run a device
is offline a fraction ``rate * downtime / (1 + rate * downtime)`` of the time.

:class:`LinkCuts` takes the links of given devices down during scheduled windows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fleet.statefile import attrs_state, load_attrs


class Churn:
    """Online/offline state of N devices, all online at t = 0."""

    def __init__(self, n: int, failure_rate_per_s: float, mean_downtime_s: float, rng: np.random.Generator) -> None:
        if failure_rate_per_s < 0:
            raise ValueError(f"failure_rate_per_s must be >= 0, got {failure_rate_per_s}")
        if failure_rate_per_s > 0 and mean_downtime_s <= 0:
            raise ValueError(f"mean_downtime_s must be > 0 when devices fail, got {mean_downtime_s}")
        self.mean_uptime_s = 1 / failure_rate_per_s if failure_rate_per_s > 0 else np.inf
        self.mean_downtime_s = mean_downtime_s
        self.rng = rng
        self.online = np.ones(n, dtype=bool)
        """Whether each device is online, (N,) bool."""
        self.next_time = np.full(n, np.inf) if failure_rate_per_s == 0 else rng.exponential(self.mean_uptime_s, n)
        """Time of each device's next transition, (N,) seconds."""

    STATE = ("online", "next_time", "rng")
    """What changes as devices fail and come back (:mod:`fleet.statefile`)."""

    def state_dict(self) -> dict:
        return attrs_state(self, self.STATE)

    def load_state_dict(self, state: dict) -> None:
        load_attrs(self, state, self.STATE)

    def advance(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Apply every transition due at or before ``t``, in time order.

        A device may flip several times within one call. Returns ``(device, time,
        online_after)``, each (K,), sorted by time (ties by device).
        """
        devices, times, states = [np.zeros(0, dtype=np.intp)], [np.zeros(0)], [np.zeros(0, dtype=bool)]
        due = np.flatnonzero(self.next_time <= t)
        while due.size:
            self.online[due] = ~self.online[due]
            devices.append(due)
            times.append(self.next_time[due])
            states.append(self.online[due])
            holding = np.where(self.online[due], self.mean_uptime_s, self.mean_downtime_s)
            self.next_time[due] += self.rng.exponential(holding)
            due = due[self.next_time[due] <= t]
        device, time, online_after = np.concatenate(devices), np.concatenate(times), np.concatenate(states)
        order = np.lexsort((device, time))
        return device[order], time[order], online_after[order]


class LinkCuts:
    """Scheduled cuts: the links of some devices are down during half-open windows [start, end)."""

    def __init__(self, windows: Sequence[tuple[float, float, np.ndarray]]) -> None:
        for start, end, _ in windows:
            if not start <= end:
                raise ValueError(f"a link cut must not end ({end}) before it starts ({start})")
        self.windows = [(float(s), float(e), np.asarray(d, dtype=np.intp)) for s, e, d in windows]

    def down(self, t: float, n: int) -> np.ndarray:
        """Whether each of ``n`` devices has its link cut at time ``t``, (N,) bool."""
        down = np.zeros(n, dtype=bool)
        for start, end, devices in self.windows:
            if start <= t < end:
                down[devices] = True
        return down
