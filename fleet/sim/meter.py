"""The feeder meters: every control period each site publishes its feeder's load.

A device on a shared feeder cannot see the other devices' controls, but it can deduce their sum
from the feeder's load minus its own power (the cooperative learner does,
:mod:`fleet.learners.cooperative`). In the simulation each site's meter is an endpoint of its
own, after the devices and the cloud collector (endpoint ``N + 1 + s`` for site ``s``), on the
collector's link profile (a meter sits on the grid operator's network, not on a home's radio),
and publishes on ``fleet/<site>/meter/meter``; the devices of that site subscribe to it. Per-site
endpoints rather than the collector: one publisher per topic keeps a site's readings to its own
devices, so the bytes each device receives are those of its own feeder.

A reading is encoded by the wire codec (kind ``meter``) as one float32 array (4,): the site's
index, its load and its capacity, kW, and its number of devices; the load is that of the tick
just controlled. It goes at QoS 0: a lost reading is missing, and the device goes on with the
newest it has (a stale one). On receipt, a reading that the codec rejects or of another layout
(malformed), one that names another site than the receiver's (foreign) or one with a value that
cannot be a load (not finite, a negative load, a capacity not above 0 or no device) is dropped
and counted by reason (``meter/*``).

On real boards each site's meter is a process of its own (``fleet meter``, :mod:`fleet.edge.meter`) that
publishes the same reading (:func:`readings`) with the same sender (``N + 1 + s``) on :func:`meter_topic`,
and an agent checks what it receives with :func:`reading_checks`. In a mixed fleet the bridge sends the
readings of this module's meters to the boards (:mod:`fleet.sim.bridge`).
"""

from __future__ import annotations

import numpy as np

from fleet.learners import REGISTRY
from fleet.learners.base import Deliveries
from fleet.mqtt.codec import DType, Kind, decode_batch, encode_batch
from fleet.mqtt.topics import KINDS, device_topic
from fleet.net.network import Delivered, Outgoing
from fleet.scenario import Scenario
from fleet.statefile import attrs_state, load_attrs

METER = KINDS.index("meter")
METER_NAME = "meter"
"""The device-name level of every meter's topic."""
DROPS = ("malformed", "foreign", "bad_value")
"""Reasons a reading is dropped, in the order of :attr:`SiteMeters.dropped`."""


def reads_meter(scenario: Scenario) -> bool:
    """Whether the scenario's learner reads its feeder's meter."""
    return getattr(REGISTRY[scenario.learner.name].cls, "reads_meter", False)


def meter_topic(site: str) -> str:
    """Where the meter of ``site`` publishes its readings."""
    return device_topic(site, METER_NAME, "meter")


def readings(sites: np.ndarray, load: np.ndarray, capacity: np.ndarray, devices: np.ndarray) -> np.ndarray:
    """(S, 4) float32 readings ``[site index, load kW, capacity kW, devices]`` of S sites, each (S,)."""
    return np.stack([sites, load, capacity, devices], 1).astype(np.float32)


def reading_checks(values: np.ndarray, site: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Of D readings ``values`` (D, 4) received at devices of ``site`` (D,): (own (D,): naming that site,
    good (D,): own and a possible load: finite, load >= 0, capacity > 0, at least one device)."""
    own = values[:, 0] == site
    load, capacity, devices = values[:, 1], values[:, 2], values[:, 3]
    return own, own & np.isfinite(values).all(1) & (load >= 0) & (capacity > 0) & (devices >= 1)


class SiteMeters:
    """The meters of S sites, endpoints ``first .. first + S - 1``, and the checks on what they deliver."""

    def __init__(self, first: int, site_names: list[str], site_of: np.ndarray, feeder_kw: np.ndarray) -> None:
        """``site_of`` (N,) each device's site; ``feeder_kw`` (S,) each site's capacity."""
        self.first, self.site_names = first, site_names
        self.site_of, self.feeder_kw = site_of, feeder_kw
        self.devices = np.bincount(site_of, minlength=len(site_names))
        self.seq = np.zeros(len(site_names), np.int64)
        self.dropped = np.zeros(len(DROPS), np.int64)
        """Readings dropped on receipt, per reason of :data:`DROPS`."""

    def endpoints(self) -> tuple[list[str], list[str]]:
        """(site, name) of every meter endpoint, in order."""
        return list(self.site_names), [METER_NAME] * len(self.site_names)

    def topics(self) -> list[str]:
        """(N,) the topic of each device's meter."""
        return [meter_topic(self.site_names[s]) for s in self.site_of]

    def outgoing(self, t: float, site_load: np.ndarray) -> Outgoing:
        """Every site's reading of ``site_load`` (S,) kW at ``t``."""
        sites = np.arange(len(self.site_names))
        sender = self.first + sites
        self.seq += 1
        values = readings(sites, site_load, self.feeder_kw, self.devices)
        rows = encode_batch(Kind.METER, sender, self.seq, t, [values], DType.FLOAT32)
        return Outgoing(METER, sender, self.seq.copy(), rows, qos=0)

    def received(self, got: Delivered) -> Deliveries | None:
        """The readings of ``got`` that pass the checks, as :class:`Deliveries` with arrays
        [values (M, 4)]; the others counted in :attr:`dropped`. None if none passes."""
        dec = decode_batch(got.rows)
        shaped = len(dec.arrays) == 1 and dec.arrays[0].shape[1:] == (4,)
        ok = dec.valid[got.msg] & shaped
        self.dropped[0] += int((~ok).sum())
        if not shaped or not ok.any():
            return None
        values = dec.arrays[0][got.msg]  # (D, 4)
        own, good = reading_checks(values, self.site_of[got.receiver])
        own, good = ok & own, ok & good
        self.dropped[1] += int((ok & ~own).sum())
        self.dropped[2] += int((own & ~good).sum())
        keep = np.flatnonzero(good)
        if not len(keep):
            return None
        return Deliveries(
            got.receiver[keep], got.sender[keep], dec.timestamp[got.msg[keep]], got.msg[keep], [dec.arrays[0]]
        )

    def metrics(self) -> dict[str, float]:
        return {f"meter/dropped_{reason}": float(k) for reason, k in zip(DROPS, self.dropped)}

    STATE = ("seq", "dropped")

    def state_dict(self) -> dict:
        return attrs_state(self, self.STATE)

    def load_state_dict(self, state: dict) -> None:
        load_attrs(self, state, self.STATE)
