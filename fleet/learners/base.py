"""The learner protocol: what the simulation engine (and later the edge agent) calls.

A learner controls all N devices of a fleet at once, on parameters stacked over a leading
device axis. The engine calls, every control tick, :meth:`Learner.act` with an
:class:`Observation` and then :meth:`Learner.observe` with the reward; every learning period
:meth:`Learner.update`; and, when the learner communicates, :meth:`Learner.outbox` to get
what each device publishes and :meth:`Learner.inbox` with what each device actually received
through the simulated network (as :class:`Deliveries`). A device's decisions may depend only on
its own observations and on its own inbox.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np

from fleet.config import StrictModel

if TYPE_CHECKING:
    from devices.occupancy import Occupancy
    from devices.tariff import Tariff
    from fleet.sim.topology import Topology


@dataclass(frozen=True)
class Observation:
    """What every device senses at a control tick; all arrays (N,)."""

    temp_c: np.ndarray
    """Measured indoor temperature (with sensor noise)."""
    outdoor_c: np.ndarray
    """Outdoor temperature at the device."""
    band_lo: np.ndarray
    """Lower comfort bound now."""
    band_hi: np.ndarray
    """Upper comfort bound now."""
    occupied: np.ndarray
    """Whether the home is occupied now (bool)."""
    price: np.ndarray
    """Electricity price now, per kWh."""
    feeder_load: np.ndarray
    """The device's feeder load at the previous tick as a fraction of its capacity."""
    hour: float
    """Hour of the day, [0, 24)."""
    online: np.ndarray
    """Whether the device is connected (bool); offline devices still control locally."""
    band_lo_ahead: np.ndarray
    """(N, H) lower comfort bound at each of PREVIEW_H hours from now (the device's schedule)."""
    band_hi_ahead: np.ndarray
    """(N, H) upper comfort bound at each of PREVIEW_H hours from now."""
    price_ahead: np.ndarray
    """(N, H) electricity price at each of PREVIEW_H hours from now (the tariff), per kWh."""


PREVIEW_H = (1.0, 2.0, 3.0, 4.0)
"""Hours ahead at which a device previews its comfort band and the price. A thermostat knows
its own schedule and tariff; seeing them ahead makes heating before the band or the price rises
a function of what the device observes, rather than of the hour alone."""
N_FEATURES = 10 + 3 * len(PREVIEW_H)
"""Columns of a thermostat's features (:func:`fleet.learners.features.features`): what its
network observes, known without torch so that a config can size the network's messages."""


def preview(occupancy: Occupancy, tariff: Tariff, t_s: float, n: int) -> dict[str, np.ndarray]:
    """The ``*_ahead`` fields of an :class:`Observation` of ``n`` devices at ``t_s``, each (n, H)."""
    times = t_s + 3600.0 * np.asarray(PREVIEW_H)  # (H,)
    lo, hi = occupancy.band(times)
    return {"band_lo_ahead": lo, "band_hi_ahead": hi, "price_ahead": np.tile([tariff.price(t) for t in times], (n, 1))}


@dataclass(frozen=True)
class Deliveries:
    """D deliveries of M decoded messages of one kind: delivery i brought message ``msg[i]``
    from ``sender[i]`` to ``receiver[i]``. A message that reached several receivers is held
    once, so its arrays are not copied per delivery."""

    receiver: np.ndarray
    """(D,) int receiving endpoint."""
    sender: np.ndarray
    """(D,) int sending endpoint."""
    published_at: np.ndarray
    """(D,) float: the timestamp of the delivered message."""
    msg: np.ndarray
    """(D,) int in [0, M): row of the delivered message in ``arrays``."""
    arrays: list[np.ndarray]
    """The messages' arrays as decoded, each (M, ...)."""

    def __post_init__(self) -> None:
        d = len(self.receiver)
        shapes = [np.shape(x) for x in (self.receiver, self.sender, self.published_at, self.msg)]
        if shapes != [(d,)] * 4:
            raise ValueError(f"receiver, sender, published_at and msg must have shape (D,) = ({d},), got {shapes}")
        m = min((len(a) for a in self.arrays), default=None)
        if self.msg.dtype.kind not in "iu" or (d and m is not None and not 0 <= self.msg.min() <= self.msg.max() < m):
            raise ValueError(f"msg must be integers indexing the M = {m} rows of every array, got {self.msg!r}")

    @classmethod
    def one_message_each(
        cls, receiver: np.ndarray, sender: np.ndarray, arrays: list[np.ndarray], published_at: np.ndarray
    ) -> Deliveries:
        """D deliveries of D messages, ``arrays`` each (D, ...): row i is what delivery i brought."""
        return cls(receiver, sender, published_at, np.arange(len(receiver)), arrays)

    def arrays_of(self, index: np.ndarray | slice = slice(None)) -> list[np.ndarray]:
        """The arrays of deliveries ``index`` (into D), one row per delivery: each (len(index), ...)."""
        return [a[self.msg[index]] for a in self.arrays]


@dataclass(frozen=True)
class LearnerContext:
    """What a learner is built from: never the whole experiment."""

    n_devices: int
    n_levels: int
    """HVAC power levels per device; actions are level indices in [0, n_levels)."""
    mode: str
    """HVAC mode: "heat" or "cool"."""
    rng: np.random.Generator
    device: str = "cpu"
    """Torch device for learners that use tensors."""
    topology: Topology | None = None
    """Who may hear whom (for learners that exchange parameters with neighbours)."""
    control_period_s: float = 60.0
    """Seconds between control ticks (to turn tick counts into durations)."""
    power_levels_kw: tuple[float, ...] = ()
    """HVAC power of each level, kW (for learners that trade power: the auction's feeder market)."""


class Learner(Protocol):
    """A fleet controller; class attributes say what it does."""

    name: ClassVar[str]
    communicates: ClassVar[bool]
    """Whether it publishes and consumes messages (``outbox``/``inbox`` are only called if so:
    ``inbox(kind, Deliveries)`` with what each receiver actually got, ``outbox(active) ->
    [(kind, Publication)]`` with what the active devices publish)."""
    exchange: ClassVar[str]
    """Who talks to whom: "none", "neighbours" (params among topology neighbours) or "cloud"
    (experience up to the cloud endpoint, params from it to every device)."""
    update_every: int
    """Control ticks between updates (0: never updates)."""
    metric_keys: ClassVar[tuple[str, ...]]
    """Names of the training metrics ``update`` returns (columns of metrics.csv)."""

    def act(self, obs: Observation) -> np.ndarray:
        """HVAC level per device, (N,) int64 in [0, n_levels)."""

    def observe(self, reward: np.ndarray) -> None:
        """Reward (N,) of the last action."""

    def update(self, t: float) -> dict[str, float]:
        """One learning step for all devices at simulated time ``t``; returns namespaced
        training metrics (empty when there was nothing to learn from)."""


@dataclass(frozen=True)
class RegistryEntry:
    """A registered learner: its class and its typed config, as a ``fleet.learners`` entry
    point names it (:mod:`fleet.learners.registry`).

    ``learner`` is the class, or where to import it from (``"package.module:Class"``): then
    reading a scenario, which validates ``learner.params`` against ``config_cls``, and listing
    the learners do not import the learner's module (nor torch, if it needs it)."""

    learner: type | str
    """The class (a :class:`Learner`, built as ``cls(config, ctx)``) or ``"module:Class"``."""
    config_cls: type[StrictModel]
    """Its config: ``learner.params`` of a scenario are validated against this model."""
    summary: str
    """One line for ``fleet learners``."""

    @property
    def cls(self) -> type:
        """The learner class, imported on first use where ``learner`` names it."""
        if not isinstance(self.learner, str):
            return self.learner
        module, _, attr = self.learner.partition(":")
        return getattr(importlib.import_module(module), attr)
