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
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np

from devices.config import FORECAST_LEAD_H
from fleet.config import StrictModel

if TYPE_CHECKING:
    from devices.occupancy import Occupancy
    from devices.tariff import Tariff
    from fleet.learners.adapters import Adapter
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
    outdoor_ahead: np.ndarray
    """(N, L) forecast outdoor temperature at the device at each of ``forecast_lead_h`` hours from
    now: the scenario's ``weather.forecast``, or on a board its forecast source; the current
    outdoor temperature repeated (persistence) where there is none (:func:`persistence`)."""
    forecast_lead_h: tuple[float, ...]
    """The L lead times of ``outdoor_ahead``, hours from now, increasing."""
    lookahead: Lookahead | None = None
    """The device's schedule and tariff over the hours its learner asked for (``Learner.lookahead_h``);
    None for a learner that asks for none."""


@dataclass(frozen=True)
class Lookahead:
    """What a device knows of its own comfort schedule and tariff over a planning horizon: the
    band and the price at each of K times ahead, as :data:`PREVIEW_H` gives them for a few.

    Its arrays are computed when one of them is first read (by ``schedule``, once): the engine and
    the edge agent give a lookahead to every observation of a learner that asks for one, and a
    planner reads it only on the ticks it plans."""

    hours: np.ndarray
    """(K,) hours from now."""
    schedule: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]
    """Computes ``(band_lo, band_hi, price)`` when first read (:func:`schedule`)."""

    @cached_property
    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.schedule()

    @property
    def band_lo(self) -> np.ndarray:
        """(N, K) lower comfort bound at each of ``hours`` from now."""
        return self._arrays[0]

    @property
    def band_hi(self) -> np.ndarray:
        """(N, K) upper comfort bound at each of ``hours`` from now."""
        return self._arrays[1]

    @property
    def price(self) -> np.ndarray:
        """(N, K) electricity price at each of ``hours`` from now, per kWh."""
        return self._arrays[2]


PREVIEW_H = (1.0, 2.0, 3.0, 4.0)
"""Hours ahead at which a device previews its comfort band and the price. A thermostat knows
its own schedule and tariff; seeing them ahead makes heating before the band or the price rises
a function of what the device observes, rather than of the hour alone."""
N_FEATURES = 10 + 3 * len(PREVIEW_H)
"""Columns of a thermostat's features (:func:`fleet.learners.features.features`): what its
network observes, known without torch so that a config can size the network's messages."""


def preview(occupancy: Occupancy, tariff: Tariff, t_s: float, n: int) -> dict[str, np.ndarray]:
    """The ``*_ahead`` fields of an :class:`Observation` of ``n`` devices at ``t_s``, each (n, H)."""
    ahead = lookahead(occupancy, tariff, t_s, n, PREVIEW_H)
    return {"band_lo_ahead": ahead.band_lo, "band_hi_ahead": ahead.band_hi, "price_ahead": ahead.price}


def lookahead(occupancy: Occupancy, tariff: Tariff, t_s: float, n: int, hours) -> Lookahead:
    """The schedule and tariff of ``n`` devices at ``hours`` (K,) after ``t_s``, computed when first read."""
    hours = np.asarray(hours, dtype=float)
    return Lookahead(hours, partial(schedule, occupancy, tariff, t_s + 3600.0 * hours, n))


def schedule(occupancy: Occupancy, tariff: Tariff, times: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """The comfort band (low, high) and the price of ``n`` devices at ``times`` (K,) s, each (n, K)."""
    lo, hi = occupancy.band(times)
    return lo, hi, np.tile([tariff.price(t) for t in times], (n, 1))


def persistence(outdoor_c: np.ndarray, lead_h: tuple[float, ...] = FORECAST_LEAD_H) -> dict:
    """The forecast fields of an :class:`Observation` that repeat ``outdoor_c`` (N,) at every lead
    time: ``outdoor_ahead`` (N, L) and ``forecast_lead_h``, the forecast when there is none."""
    return {"outdoor_ahead": np.repeat(outdoor_c[:, None], len(lead_h), axis=1), "forecast_lead_h": lead_h}


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


def _thermostat() -> Adapter:
    """The thermostat adapter, imported when a context is built (it needs torch; this module does not)."""
    from fleet.learners.features import THERMOSTAT

    return THERMOSTAT


@dataclass(frozen=True)
class LearnerContext:
    """What a learner is built from: never the whole experiment."""

    n_devices: int
    n_levels: int
    """Actions per device, indices in [0, n_levels): a thermostat's HVAC power levels."""
    mode: str
    """HVAC mode: "heat" or "cool"."""
    rng: np.random.Generator
    device: str = "cpu"
    """Torch device for learners that use tensors."""
    topology: Topology | None = None
    """Who may hear whom (for learners that exchange parameters with neighbours)."""
    control_period_s: float = 60.0
    """Seconds between control ticks (to turn tick counts into durations, and durations such as a
    learner's ``discount_horizon`` into rates per tick)."""
    adapter: Adapter = field(default_factory=_thermostat)
    """What the devices observe, as the learner cores see it (:mod:`fleet.learners.adapters`): the
    thermostat features by default; :class:`~fleet.learners.adapters.PlainAdapter` for plain
    (N, obs_dim) observations."""
    levels_kw: np.ndarray | None = None
    """(N, L) electrical power of each HVAC level, kW: the rating of each device's own heat pump,
    which a board knows (None where the caller does not give it)."""
    forecast_lead_h: tuple[float, ...] | None = None
    """The lead times of the weather forecast its observations will carry (``Observation.forecast_lead_h``),
    hours; None where the caller does not know them in advance."""
    reward_weights: tuple[float, float] = (0.0, 0.0)
    """The scenario's reward weights (per degree-hour of discomfort, per kWh of feeder overload),
    for learners that model their reward (:func:`fleet.sim.engine.tick_reward`)."""


class Learner(Protocol):
    """A fleet controller; class attributes say what it does.

    A learner that plans may have a ``lookahead_h`` attribute: the hours ahead (K,) at which it
    needs its devices' own schedule and tariff. The engine and the edge agent then give every
    observation a :class:`Lookahead` at those hours (:func:`lookahead`, as the preview is made);
    learners without it get none. A lookahead costs little until it is read (its arrays are
    computed on first read), so a learner that plans every few ticks pays for the schedule only
    on the ticks it plans.

    A learner whose class says ``supports_reset = True`` can replace devices by new installs
    (``fleet.installs``, :mod:`fleet.sim.installs`): ``reset(rows, t)`` sets the rows ``rows`` (R,)
    of every per-device state to what a freshly built learner holds, at simulated time ``t``,
    before the devices act at ``t``; the other rows stay as they are.
    """

    name: ClassVar[str]
    communicates: ClassVar[bool]
    """Whether it publishes and consumes messages (``outbox``/``inbox`` are only called if so:
    ``inbox(kind, Deliveries)`` with what each receiver actually got, ``outbox(active) ->
    [(kind, Publication)]`` with what the active devices publish)."""
    exchange: ClassVar[str]
    """Who talks to whom: "none", "neighbours" (params among topology neighbours), "cloud"
    (experience up to the cloud endpoint, params from it to every device) or "meter" (nothing
    published; its feeder's meter readings in, :mod:`fleet.sim.meter`, with ``reads_meter``)."""
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
