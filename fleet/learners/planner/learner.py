"""The planner learners: identify the house online, plan by dynamic programming, re-plan on a period.

Every control tick each device closes the sample of the tick before with the temperature it
measures now and opens one for the tick it starts (:mod:`.identification`), and acts: with a
trusted model, the level its plan says (:func:`.planning.choose`); without one (too little data,
or an estimate that is not physical), the thermostat of ``fallback``. Every ``replan_period``
(the learner's update) it estimates its model again and plans the ``horizon`` ahead
(:func:`.planning.plan`) from the observation of that tick, its
:class:`~fleet.learners.base.Lookahead` included (asked for by :attr:`PlannerLearner.lookahead_h`).
Whatever its model, a heating device never heats once it measures the band's upper bound (a
cooling one never cools below the lower), so no model error heats without bound. A device that
measures a temperature outside the plan's grid (``grid_c``) runs the thermostat until it is back
on it (counted in ``planner/off_grid``): the cost-to-go is clamped at the grid's ends, so off the
grid every level looks alike to the plan, and a house that a cold snap took below it would
otherwise never be heated back.

``planner-v1`` (:class:`DiffusionPlanner`) also diffuses identification between neighbours,
adapt-then-combine in information form (Cattivelli, Lopes and Sayed, "Diffusion recursive
least-squares for distributed estimation over adaptive networks", IEEE TSP 2008): each device
adapts its own statistics with its own data (adapt), publishes them after each re-plan, and
estimates from its own plus its neighbours' newest received statistics (combine). The houses
differ, so the neighbours' statistics are a prior, not a replacement: their average over the
neighbours that delivered any is weighted by ``neighbour_weight`` (a neighbour's sample is worth
that much of an own sample), and at most ``neighbour_cap`` of samples in all. A fresh device then
plans at once on its neighbours' model, and after a day or two of its own data its own
dominates; its own statistics never include the neighbours', so nothing is counted twice.
``planner-alone-v1`` (:class:`PlannerLearner`) identifies alone, with no messages.

Both reset devices to fresh ones (``supports_reset``: new installs, :mod:`fleet.sim.installs`):
their statistics, model and plan are a fresh device's, so they run the fallback thermostat until
their own data, and with diffusion what their neighbours publish from the install on, are worth
``min_data``. Neighbours that have run for weeks weigh the full ``neighbour_cap`` at
``neighbour_weight`` (a day of samples by default), so a new install plans from its first re-plan
after their statistics arrive, where alone it runs the thermostat for ``min_data``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from fleet.errors import ConfigError
from fleet.learners.base import Deliveries, LearnerContext, Observation
from fleet.learners.comm import ParamPublisher, Publication, last_per_edge
from fleet.learners.planner.config import STATS, DiffusionPlannerConfig, PlannerConfig
from fleet.learners.planner.identification import RcIdentifier, unpack
from fleet.learners.planner.planning import choose, house_model, plan
from fleet.learners.rule_based import RuleBasedLearner
from fleet.optimum import HouseModel
from fleet.statefile import attrs_state, load_attrs


class PlannerLearner:
    """Identification and planning on every device, alone; see the module docstring."""

    name: ClassVar[str] = "planner-alone-v1"
    communicates: ClassVar[bool] = False
    exchange: ClassVar[str] = "none"
    supports_reset: ClassVar[bool] = True
    metric_keys: ClassVar[tuple[str, ...]] = (
        "planner/planning",
        "planner/rejected",
        "planner/off_grid",
        "planner/time_constant_h",
        "planner/gain_c_per_kw",
    )

    def __init__(self, config: PlannerConfig, ctx: LearnerContext) -> None:
        dt = ctx.control_period_s
        _check_periods(config, dt, ctx.forecast_lead_h)
        if ctx.levels_kw is None or np.shape(ctx.levels_kw) != (ctx.n_devices, ctx.n_levels):
            raise ValueError(
                f"the planner needs each device's power per level, LearnerContext.levels_kw of shape "
                f"({ctx.n_devices}, {ctx.n_levels}), got {None if ctx.levels_kw is None else np.shape(ctx.levels_kw)}"
            )
        self.cfg, self.n, self.dt_h = config, ctx.n_devices, dt / 3600.0
        self.update_every = int(config.replan_period // dt)
        """Control ticks between two plans."""
        steps = int(np.ceil(config.horizon / dt - 1e-9))
        self.lookahead_h = tuple(self.dt_h * np.arange(1, steps + 1))
        """The ticks after a plan's own, in hours: what each plan needs of the schedule and tariff."""
        self.sign = 1.0 if ctx.mode == "heat" else -1.0
        self.levels_kw = np.asarray(ctx.levels_kw, dtype=float)
        self.ident = RcIdentifier(config.identification, self.n, dt)
        self.min_samples = config.identification.min_data / dt
        self.fallback = RuleBasedLearner(config.fallback, ctx)
        self.values = np.zeros((steps + 1, self.n, len(np.arange(*config.grid_c))), np.float32)
        """(K + 1, N, G) the cost-to-go of the last plan before each of its ticks."""
        self.model = np.repeat(self.ident.prior_model[:, None], self.n, axis=1)
        """(3, N) the last plan's time constant (h), gain (degC/kW) and internal warming (degC); the
        prior's before the first."""
        self.planning = np.zeros(self.n, bool)
        """(N,) which devices follow the plan (the others run the fallback thermostat)."""
        self.age = steps
        """Ticks acted on the last plan; its K ticks are used up (or there is none) at K."""
        self.plans = 0
        self.off_grid = 0
        """Device-ticks on the thermostat because the measured temperature was outside ``grid_c``."""
        self._obs: Observation | None = None

    # --- acting ----------------------------------------------------------------------------

    def act(self, obs: Observation) -> np.ndarray:
        level, _ = self.advise(obs)
        self.record(obs, level)
        return level

    def advise(self, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
        """Close every device's identification sample of the tick before with its temperature at
        ``obs``; then its level (N,) int64 for ``obs``, and (N,) bool whether its plan chose it (else
        the fallback thermostat did: no trusted model, or off the grid). :meth:`record` follows."""
        self.ident.close(obs.temp_c)
        level = self.fallback.act(obs)
        planned = np.zeros(self.n, bool)
        if self.age < len(self.values) - 1 and self.planning.any():
            chosen = choose(
                self._house(), obs, self.values[self.age + 1], self.cfg.discomfort_per_degh, self.cfg.margin_c,
                self.dt_h, self.cfg.grid_c,
            )  # fmt: skip
            low, high, _ = self.cfg.grid_c
            off_grid = self.planning & ((obs.temp_c < low) | (obs.temp_c > high))
            self.off_grid += int(off_grid.sum())
            planned = self.planning & ~off_grid
            level = np.where(planned, chosen, level)
        too_far = obs.temp_c >= obs.band_hi if self.sign > 0 else obs.temp_c <= obs.band_lo
        return np.where(too_far, 0, level), planned

    def record(self, obs: Observation, level: np.ndarray) -> None:
        """Open every device's identification sample of the tick that starts at ``obs`` with the
        level (N,) it runs, and move on along the plan."""
        self.ident.open(obs.temp_c, obs.outdoor_c, self.sign * self.levels_kw[np.arange(self.n), level])
        self.age += 1
        self._obs = obs

    def observe(self, reward: np.ndarray) -> None:
        """Rewards are not used: the plan's objective is its own (``discomfort_per_degh``)."""

    def _house(self) -> HouseModel:
        return house_model(*self.model, self.levels_kw, self.sign)

    # --- identifying and planning ------------------------------------------------------------

    def update(self, t: float) -> dict[str, float]:
        """Estimate every device's model and plan from the observation of this tick."""
        if self._obs is None:
            return {}
        ok, *model = self.ident.physical(self.ident.estimate(*self._neighbours()))
        ready = self._samples() >= self.min_samples
        self.ident.rejected += int((ready & ~ok).sum())
        self.planning = ready & ok
        self.model = np.stack(model)
        if self.planning.any():
            cfg = self.cfg
            self.values = plan(self._house(), self._obs, cfg.discomfort_per_degh, cfg.margin_c, self.dt_h, cfg.grid_c)
            self.age = 0
        self.plans += 1
        return {
            "planner/planning": float(self.planning.mean()),
            "planner/rejected": float(self.ident.rejected),
            "planner/off_grid": float(self.off_grid),
            "planner/time_constant_h": float(self.model[0].mean()),
            "planner/gain_c_per_kw": float(self.model[1].mean()),
        }

    def _neighbours(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The neighbours' statistics as weighted into each device's estimate: none alone."""
        return None, None

    def _samples(self) -> np.ndarray:
        """(N,) the samples each device's estimate rests on."""
        return self.ident.samples()

    def reset(self, rows: np.ndarray, t: float) -> None:
        """Devices ``rows`` (R,) are new installs: no data, no model, no plan. They run the fallback
        thermostat until their data (and their neighbours') are worth ``min_data``."""
        self.ident.reset(rows)
        self.fallback.reset(rows, t)
        self.values[:, rows] = 0
        self.model[:, rows] = self.ident.prior_model[:, None]
        self.planning[rows] = False

    # --- checkpoints -------------------------------------------------------------------------

    STATE: ClassVar[tuple[str, ...]] = (
        "ident", "fallback", "values", "model", "planning", "age", "plans", "off_grid",
    )  # fmt: skip

    def state_dict(self) -> dict:
        """:attr:`STATE`: the statistics, the thermostat's state and the plan being followed."""
        return attrs_state(self, self.STATE)

    def load_state_dict(self, state: dict) -> None:
        load_attrs(self, state, self.STATE)

    def export_policy(self, device_index: int) -> dict[str, torch.Tensor]:
        """One device's identified model and whether it plans on it."""
        return {
            "time_constant_h": torch.tensor(self.model[0, device_index]),
            "gain_c_per_kw": torch.tensor(self.model[1, device_index]),
            "internal_c": torch.tensor(self.model[2, device_index]),
            "planning": torch.tensor(bool(self.planning[device_index])),
        }


def _check_periods(config: PlannerConfig, dt: float, lead_h: tuple[float, ...] | None) -> None:
    """ConfigError naming the field unless the periods fit a control period of ``dt`` seconds and
    a forecast of lead times ``lead_h`` (hours; None: not known in advance, nothing to check)."""
    if lead_h and config.horizon > 3600.0 * lead_h[-1] + 1e-6:
        raise ConfigError(
            f"learner.params.horizon: {config.horizon / 3600:g} h is beyond the weather forecast's last lead time "
            f"({lead_h[-1]:g} h); shorten the horizon or forecast further ahead"
        )
    if config.replan_period < dt:
        raise ConfigError(
            f"learner.params.replan_period: {config.replan_period:g} s is shorter than the control period ({dt:g} s); "
            "a device can plan at most once per tick"
        )
    if config.horizon < config.replan_period:
        raise ConfigError(
            f"learner.params.horizon: {config.horizon:g} s is shorter than replan_period ({config.replan_period:g} s); "
            "a plan must last until the next"
        )


class DiffusionPlanner(PlannerLearner):
    """The planner whose devices combine their neighbours' identification statistics as a prior."""

    name: ClassVar[str] = "planner-v1"
    communicates: ClassVar[bool] = True
    exchange: ClassVar[str] = "neighbours"

    def __init__(self, config: DiffusionPlannerConfig, ctx: LearnerContext) -> None:
        super().__init__(config, ctx)
        self.topology = ctx.topology
        self.edge_stats = np.zeros((len(ctx.topology.receiver), STATS))
        """(E, 9) the newest statistics received on each edge (from its sender)."""
        self.edge_time = np.full(len(ctx.topology.receiver), -np.inf)
        """(E,) when they were published; -inf: nothing received yet."""
        self.publisher = ParamPublisher(config.comm, self.n, STATS)
        self.rejected_stats = 0
        """Received statistics rejected: not finite, or not what any device's data can give."""
        self.cap = config.neighbour_cap / ctx.control_period_s
        self.max_samples = 1.0 / (1.0 - self.ident.forget) + 1.0
        """The most samples (forgetting counted) any device's statistics can hold."""
        self.joined = np.full(self.n, -np.inf)
        """(N,) when each device was installed anew (:meth:`reset`); -inf: with the fleet."""

    @property
    def qos(self) -> int:
        return self.cfg.qos

    def flat_params(self) -> torch.Tensor:
        """(N, 9) what each device publishes: its own statistics."""
        return torch.as_tensor(self.ident.statistics(), dtype=torch.float32)

    def outbox(self, active: np.ndarray) -> list[tuple[str, Publication]]:
        """The active devices' own statistics, after each re-plan (per the communication policy)."""
        pub = self.publisher.outgoing(self.plans - 1, self.ident.statistics().astype(np.float32), active)
        return [] if pub is None else [("params", pub)]

    def inbox(self, kind: str, got: Deliveries) -> None:
        """Keep the newest sound statistics per edge; the others are counted in ``rejected_stats``."""
        edge = self.topology.edge_index(got.receiver, got.sender)
        values = got.arrays[0] if len(got.arrays) == 1 and got.arrays[0].shape[1:] == (STATS,) else None
        ok = edge >= 0
        if values is None:
            ok[:] = False
        else:
            ok &= self._sound(values.astype(float))[got.msg]
        heard = got.published_at >= self.joined[got.receiver]  # a new install hears what is published from then on
        self.rejected_stats += int((~ok & heard).sum())
        ok &= heard
        edge, stamp, row = edge[ok], got.published_at[ok], got.msg[ok]
        newer = stamp >= self.edge_time[edge]
        edge, stamp, row = edge[newer], stamp[newer], row[newer]
        last = last_per_edge(edge)
        self.edge_stats[edge[last]] = values[row[last]]
        self.edge_time[edge[last]] = stamp[last]

    def reset(self, rows: np.ndarray, t: float) -> None:
        """As the planner alone, and nothing received yet: a new install hears the statistics its
        neighbours publish from ``t`` on, and publishes its own as a device that never has."""
        super().reset(rows, t)
        into = np.isin(self.topology.receiver, rows)
        self.edge_stats[into] = 0
        self.edge_time[into] = -np.inf
        self.joined[rows] = t
        self.publisher.reset(rows)

    def _sound(self, stats: np.ndarray) -> np.ndarray:
        """(M,) whether statistics (M, 9) could come from a device's data: finite, a non-negative
        diagonal (entries 0, 3 and 5) and at most the samples its forgetting allows."""
        finite = np.isfinite(stats).all(axis=1)
        diagonal = stats[:, [0, 3, 5]]
        return finite & (np.nan_to_num(diagonal, nan=-1.0) >= 0).all(axis=1) & (stats[:, 5] <= self.max_samples)

    def _mean_received(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per device, the mean information (N, 3, 3) and vector (N, 3) over the neighbours whose
        statistics arrived, and their mean samples (N,) (zeros where none did)."""
        have = np.isfinite(self.edge_time)
        receiver = self.topology.receiver[have]
        info, vector = unpack(self.edge_stats[have])
        count = np.maximum(np.bincount(receiver, minlength=self.n), 1).astype(float)
        mean_info = np.zeros((self.n, 3, 3))
        mean_vector = np.zeros((self.n, 3))
        np.add.at(mean_info, receiver, info)
        np.add.at(mean_vector, receiver, vector)
        mean_info /= count[:, None, None]
        mean_vector /= count[:, None]
        return mean_info, mean_vector, mean_info[:, 2, 2]

    def _weight(self, samples: np.ndarray) -> np.ndarray:
        """(N,) the weight of the neighbours' mean statistics of ``samples`` (N,) samples."""
        return self.cfg.neighbour_weight * np.minimum(1.0, self.cap / np.maximum(samples, 1e-12))

    def _neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        info, vector, samples = self._mean_received()
        w = self._weight(samples)
        return w[:, None, None] * info, w[:, None] * vector

    def _samples(self) -> np.ndarray:
        samples = self._mean_received()[2]
        return self.ident.samples() + self._weight(samples) * samples

    STATE: ClassVar[tuple[str, ...]] = (
        *PlannerLearner.STATE,
        "edge_stats",
        "edge_time",
        "joined",
        "publisher",
        "rejected_stats",
    )
