"""``cooperative-v1``: the devices of a feeder learn to share it, each from what it can see.

The jointly controlled system is the feeder: its load is the sum of its devices' heat-pump
powers. A device's control is its power (kW, from its own level table ``levels_kw``); its
reward is the engine's (:func:`fleet.sim.engine.tick_reward`: its own cost and discomfort plus
its share of the feeder's overload penalty). It deduces the other devices' summed power of the
previous tick from the feeder's meter reading, which its site publishes every control period
over the simulated network (:mod:`fleet.sim.meter`): ``others = load - own power``. A lost
reading leaves the newest one in use (stale); before the first, the others count as 0. The
reading also replaces the feature ``feeder_load`` of the observation (load / capacity as the
meter said), so a device sees its feeder only through the network.

A transition is complete one tick later: at tick k+1 the device stores (x_k, a_k, r_k,
x_{k+1}, others_k) and then acts. IER uses the feeder's additive load model
(:class:`FeederDynamics`). Its choices beyond the core's (:mod:`.core`):

- an imagined transition changes only what the feeder model knows: the load feature of the
  next observation and the device's share of the overload penalty (and its energy cost, were
  its own level to change); its temperature and discomfort are those it lived. So it imagines
  ``ALONE`` and ``ALL_COPY`` only, which keep the device's own level (imagining ``IDLE`` or
  ``COPY_MEAN`` with the comfort as lived would make idling look free of discomfort; on
  feeder-peak-v1, seed 0, the first version that did so and this one let the houses go about
  equally cold: docs/studies/cooperative.md);
- the number of devices sharing the feeder comes with the meter reading.

With ``comfort_guard`` comfort is a constraint rather than a price (a shield, Alshiekh et al.
2018, "Safe Reinforcement Learning via Shielding"): a device outside its comfort band on the side
its HVAC corrects runs its top level, as the rule-based thermostat switches on there, and the
Q-network chooses only inside the band (:func:`guarded`). The transition stores the level that
ran, so the network learns what the guarded fleet does, and the level the guard forces at its next
observation (``next_forced``), so its TD target bootstraps from the level the guarded fleet will run
there, not from the best of levels never run in guarded states (:meth:`.core.CooperativeQ.td_target`).
A price cannot buy the comfort back: on feeder-peak-v1 the feeders carry about 80 % of the
thermostat's energy, so every house saves by letting the others stay warm. The guard keeps no
hysteresis: inside the band the learner may coast down to the band's edge. Its metric
``comfort/guarded_share`` is the share of devices it overrode at the newest tick.

On a feeder, IER's twin "every other device copies me" charges the device its share of an overload
at every hour, where the lived penalty is 0 whenever the feeder is below its capacity, and so hides
when heating ahead is cheap. ``ier_coordination`` says where that twin is imagined
(:meth:`FeederDynamics.coupled`); elsewhere the twin is the device alone. What each setting, and
IER itself, does on feeder-peak-v1 is measured in docs/studies/cooperative.md ("On the fleet"; the
``feeder`` preset is TER + IQL without IER).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from fleet.learners.base import Deliveries, LearnerContext, Observation
from fleet.learners.cooperative.config import CooperativeLearnerConfig
from fleet.learners.cooperative.core import METRIC_KEYS, CooperativeQ
from fleet.learners.cooperative.imagine import ALL_COPY
from fleet.learners.cooperative.replay import Batch
from fleet.learners.features import N_FEATURES, features, price_now
from fleet.statefile import attrs_state, expect_keys, load_attrs

FEEDER_COLUMN = 9
"""Column of ``feeder_load`` in :func:`fleet.learners.features.features`."""
GUARD_KEYS = ("comfort/guarded_share",)


def guarded(obs: Observation, mode: str) -> np.ndarray:
    """(N,) bool: the devices whose measured temperature lies outside the comfort band on the side
    their HVAC corrects (below in heat mode, above in cool mode), where the comfort guard runs the
    top level."""
    return obs.temp_c < obs.band_lo if mode == "heat" else obs.temp_c > obs.band_hi


class FeederDynamics:
    """The feeder's additive load model, for IER: ``load = own + others`` kW. It imagines only
    the others copying the device: a scenario that changes the device's own level would need its
    house's thermal model to say what that does to its comfort (kept as lived, idling would look
    free of discomfort). Where it imagines them (``ier_coordination``) is :meth:`coupled`."""

    coordination = (ALL_COPY,)

    def __init__(
        self,
        controls: torch.Tensor,
        capacity: torch.Tensor,
        overload_weight: float,
        dt_h: float,
        ier_coordination: str = "always",
    ) -> None:
        """``controls`` (N, L) kW per level; ``capacity`` (N,) each device's feeder capacity as
        last read (infinite before: no penalty), held by reference; penalty per kWh of overload."""
        self.controls, self.capacity, self.weight, self.dt_h = controls, capacity, overload_weight, dt_h
        self.ier_coordination = ier_coordination

    def coupled(self, lived: Batch) -> torch.Tensor:
        """(N, B) bool: the ``lived`` transitions (N, B) whose twin may be the others copying the
        device: all (``always``), those whose feeder load (own + others) exceeded its capacity
        (``overloaded``: below it the overload penalty is 0 whatever the others draw, so the device's
        reward did not depend on them), or none (``never``)."""
        if self.ier_coordination == "overloaded":
            return self.controls.gather(1, lived.action) + lived.others > self.capacity.unsqueeze(1)
        return torch.full_like(lived.reward, self.ier_coordination == "always", dtype=torch.bool)

    def penalty(self, load: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        """The device's share of its feeder's overload penalty, (N, B), for loads and own powers (N, B)."""
        over = (load - self.capacity.unsqueeze(1)).clamp(min=0)
        return self.weight * over * own / load.clamp(min=1e-9) * self.dt_h

    def imagine(self, lived: Batch, own: torch.Tensor, others: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lived_own = self.controls.gather(1, lived.action)
        load = own + others
        reward = (
            lived.reward
            + self.penalty(lived_own + lived.others, lived_own)
            - self.penalty(load, own)
            - (own - lived_own) * price_now(lived.obs) * self.dt_h
        )
        next_obs = lived.next_obs.clone()
        next_obs[..., FEEDER_COLUMN] = torch.nan_to_num(load / self.capacity.unsqueeze(1), posinf=0.0)
        return next_obs, reward


class CooperativeLearner:
    """TER + IER + IQL deep Q-learners on a fleet's feeders."""

    name: ClassVar[str] = "cooperative-v1"
    communicates: ClassVar[bool] = True
    exchange: ClassVar[str] = "meter"
    """It publishes nothing; it reads its feeder's meter (the engine routes the readings)."""
    reads_meter: ClassVar[bool] = True
    metric_keys: ClassVar[tuple[str, ...]] = METRIC_KEYS
    qos: ClassVar[int] = 0

    def __init__(self, config: CooperativeLearnerConfig, ctx: LearnerContext) -> None:
        self.cfg, self.ctx, self.device = config, ctx, ctx.device
        n = ctx.n_devices
        levels = np.tile(np.arange(ctx.n_levels, dtype=float), (n, 1)) if ctx.levels_kw is None else ctx.levels_kw
        self.controls = torch.tensor(levels, dtype=torch.float32, device=self.device)
        self.reading = torch.tensor([[0.0, float("inf"), 1.0]], device=self.device).repeat(n, 1)
        """(N, 3) each device's newest meter reading: load kW, capacity kW, devices on the feeder."""
        self.reading_time = np.full(n, -np.inf)
        gen = torch.Generator(device=self.device).manual_seed(int(ctx.rng.integers(2**62)))
        weight, dt_h = ctx.reward_weights[1], ctx.control_period_s / 3600
        dynamics = FeederDynamics(self.controls, self.reading[:, 1], weight, dt_h, config.ier_coordination)
        n_others = torch.ones(n, device=self.device)  # until the meter says
        self.core = CooperativeQ(config, self.controls, n_others, N_FEATURES, ctx.control_period_s, gen, dynamics)
        self.last = torch.zeros(n, N_FEATURES, device=self.device)
        """(N, F) the observation of the last action (the next transition starts there)."""
        self.last_action = torch.zeros(n, dtype=torch.long, device=self.device)
        self.last_reward = torch.zeros(n, device=self.device)
        self.pending = False
        """Whether a transition waits for its next observation."""
        self.last_forced = torch.full((n,), -1, device=self.device)
        """(N,) the level the comfort guard forced at the newest tick, -1 where it did not (its metric's source)."""
        if config.comfort_guard:
            self.metric_keys = (*METRIC_KEYS, *GUARD_KEYS)

    @property
    def update_every(self) -> int:
        return self.cfg.update_every

    def inbox(self, kind: str, got: Deliveries) -> None:
        """Meter readings [values (M, 4): site, load kW, capacity kW, devices] as the site
        published them (checked on receipt, :mod:`fleet.sim.meter`): each device keeps its newest."""
        if kind != "meter":
            return
        newer = got.published_at >= self.reading_time[got.receiver]
        receiver, stamp = got.receiver[newer], got.published_at[newer]
        values = torch.as_tensor(got.arrays_of(np.flatnonzero(newer))[0][:, 1:], device=self.device)
        order = np.argsort(stamp, kind="stable")  # the newest written last
        rows = torch.as_tensor(receiver[order], device=self.device)
        self.reading[rows] = values[torch.as_tensor(order, device=self.device)]
        self.reading_time[receiver[order]] = stamp[order]
        self.core.n_others.copy_((self.reading[:, 2:3] - 1).clamp(min=1))

    def outbox(self, active: np.ndarray) -> list:
        return []

    def act(self, obs: Observation) -> np.ndarray:
        x = features(obs, self.device)
        x[:, FEEDER_COLUMN] = torch.nan_to_num(self.reading[:, 0] / self.reading[:, 1], posinf=0.0)
        forced = self.forced(obs)
        if self.pending:
            own = self.controls.gather(1, self.last_action.unsqueeze(1)).squeeze(1)
            others = (self.reading[:, 0] - own).clamp(min=0)
            lived = (self.last, self.last_action, self.last_reward, x, others, forced)
            self.core.store(Batch(*(t.unsqueeze(1) for t in lived)))
        action = torch.where(forced >= 0, forced, self.core.act(x))
        self.last, self.last_action, self.last_forced, self.pending = x, action, forced, False
        return action.cpu().numpy()

    def forced(self, obs: Observation) -> torch.Tensor:
        """(N,) int64: the level the comfort guard runs (the top one) where it overrides the Q-network
        (:func:`guarded`), -1 elsewhere (everywhere without the guard)."""
        cold = guarded(obs, self.ctx.mode) if self.cfg.comfort_guard else np.zeros(len(obs.temp_c), bool)
        return torch.where(torch.as_tensor(cold, device=self.device), self.ctx.n_levels - 1, -1)

    def observe(self, reward: np.ndarray) -> None:
        self.last_reward = torch.as_tensor(reward, dtype=torch.float32, device=self.device)
        self.pending = True

    def update(self, t: float) -> dict[str, float]:
        metrics = self.core.update()
        if self.cfg.comfort_guard:
            metrics[GUARD_KEYS[0]] = float((self.last_forced >= 0).float().mean())
        return metrics

    def export_policy(self, device_index: int) -> dict[str, torch.Tensor]:
        """One device's Q-network as plain tensors (weights (in, out), biases (out,)), for a board."""
        q = self.core.q
        return {
            f"{kind}{k}": t[device_index].detach().cpu().clone()
            for k, (w, b) in enumerate(zip(q.weights, q.biases))
            for kind, t in (("w", w), ("b", b))
        }

    @property
    def replay_bytes(self) -> int:
        """Bytes of every device's replay memory (preallocated)."""
        return self.core.memory.nbytes

    STATE: ClassVar[tuple[str, ...]] = (
        "core",
        "reading",
        "reading_time",
        "last",
        "last_action",
        "last_reward",
        "pending",
    )

    def state_dict(self) -> dict:
        return attrs_state(self, self.STATE)

    def load_state_dict(self, state: dict) -> None:
        expect_keys(state, self.STATE)
        load_attrs(self, state, self.STATE)
