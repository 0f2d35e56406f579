"""Actor-critic learners on stacked per-device networks: independent and diffusion (Diff-DAC).

Both adapt with a local n-step actor-critic step on every device's own experience. Diffusion
(Diff-DAC, adapt-then-combine) also combines each device's *adapted* parameters with its
neighbours' *adapted* parameters of the same round, as far as the network delivered them, and
publishes its own through a communication policy (period, quantization, top-k, event trigger).

Diff-DAC's round k, with ψ_i(k) device i's adapted parameters and θ_i(k) its combined ones, is
ψ_i(k) = θ_i(k-1) + Δ_i(k) (adapt: a local step), then θ_i(k) = Σ_j c_ij ψ_j(k) (combine). On a
real network the neighbours' ψ_j(k) arrive some time after round k's update, so a device
combines round k at its next update, k+1, in this order:

1. adapt: the local step Δ_i(k+1) on the rollout it collected since update k, its gradient taken
   at the parameters it acted with, ψ_i(k) (on-policy);
2. combine round k: θ_i(k) = Σ_j c_ij ψ_j(k) over its own ψ_i(k) and the newest parameters
   received from each neighbour, which are ψ_j(k) when the network delivered them within the
   update period (neighbours published longer ago than ``staleness`` are left out, and the
   weights renormalized over the rest; a robust combine replaces the weighted mean);
3. ψ_i(k+1) = θ_i(k) + Δ_i(k+1): it acts with ψ_i(k+1) until the next update and publishes it,
   its adapted parameters of round k+1.

So the combined parameters follow Diff-DAC's recursion θ(k+1) = C (θ(k) + Δ(k+1)) exactly, but
for the point where each gradient is taken: at the adapted parameters the device acted with, one
combine earlier than θ. Before this order a device combined its adapted parameters with what
its neighbours had published, which were already combined: each round mixed in parameters one
combine older than its own.

Every device guards its model (:mod:`fleet.learners.guard`): received parameters that are not
finite, too large or much larger than its own are rejected on arrival, and a device whose
parameters fail the check after an update (and combine) goes back to those it had before it,
with its optimizer restarted. So what a device publishes or checkpoints has passed the check.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import numpy as np
import torch

from fleet.errors import ConfigError
from fleet.learners.base import Deliveries, LearnerContext, Observation
from fleet.learners.combine import (
    clip_to_own,
    coordinate_median,
    copy_rows,
    neighbourhood_stack,
    trimmed_mean,
    weighted_combine,
)
from fleet.learners.comm import ParamPublisher, ParamReceiver, Publication, last_per_edge
from fleet.learners.configs import DiffusionConfig
from fleet.learners.constraint import METRIC_KEYS as CONSTRAINT_KEYS
from fleet.learners.constraint import DiscomfortMultiplier
from fleet.learners.guard import ParamGuard
from fleet.learners.shipped import policy_path
from fleet.learners.stacked import METRIC_KEYS, ActorCritic, ActorCriticConfig, Rollout, load_actor
from fleet.learners.teacher import METRIC_KEYS as TEACHER_KEYS
from fleet.learners.teacher import PlannerTeacher
from fleet.statefile import StateMismatch, array_list, attrs_state, expect_keys, load_attrs, within


class IndependentLearner:
    """Every device learns alone from its own experience; no messages."""

    name: ClassVar[str] = "independent-v1"
    communicates: ClassVar[bool] = False
    exchange: ClassVar[str] = "none"
    metric_keys: ClassVar[tuple[str, ...]] = METRIC_KEYS

    def __init__(self, config: ActorCriticConfig, ctx: LearnerContext) -> None:
        if config.frozen and self.communicates:
            raise ConfigError(
                f"learner.params.frozen: {self.name} learns by exchanging what it learns; evaluate a fixed policy with "
                "independent-v1"
            )
        if config.frozen and config.learn_until is not None:
            raise ConfigError(
                "learner.params.learn_until: a frozen learner never learns; set one of frozen and learn_until"
            )
        self.cfg = config
        self.ctx = ctx
        self.adapter = ctx.adapter
        self.gamma = config.discount(ctx.control_period_s)
        """The discount per control tick, from ``discount_horizon``."""
        self.device = ctx.device
        self.gen = torch.Generator(device=ctx.device).manual_seed(int(ctx.rng.integers(2**62)))
        self.core = ActorCritic(config, ctx.n_devices, self.adapter.n_features, ctx.n_levels, self.gen, ctx.device)
        if config.init_policy:
            load_actor(policy_path(config.init_policy), self.core.actor.parameters, self.adapter.layout)
        self.core.anchor_here()
        self._obs: list[torch.Tensor] = []
        self._actions: list[torch.Tensor] = []
        self._rewards: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        """(N,) per tick with a teacher: its level for every device, or NO_LABEL."""
        self.updates = 0
        self.guard = ParamGuard(config.guard)
        self.learning = not config.frozen
        """False once learning has ended (``frozen``, or after ``learn_until``)."""
        self.constraint = self._multiplier(config, ctx)
        """Every device's discomfort multiplier (``discomfort_limit``), or None: the scenario's price only."""
        self.teacher = self._teacher(config, ctx)
        """Every device's teacher (``teacher``), or None: it learns from rewards."""

    def _multiplier(self, config: ActorCriticConfig, ctx: LearnerContext) -> DiscomfortMultiplier | None:
        """The multipliers of ``discomfort_limit`` (its metrics then join :attr:`metric_keys`); ConfigError
        if a frozen learner has one, or the adapter measures no discomfort."""
        if config.discomfort_limit is None:
            return None
        if config.frozen:
            raise ConfigError("learner.params.discomfort_limit: a frozen learner never learns; set one of the two")
        if not hasattr(self.adapter, "discomfort"):
            raise ConfigError(
                f"learner.params.discomfort_limit: observations of layout {self.adapter.layout!r} have no comfort "
                "band to measure discomfort against"
            )
        self.metric_keys = (*self.metric_keys, *CONSTRAINT_KEYS)
        return DiscomfortMultiplier(config.discomfort_limit, ctx.n_devices, ctx.control_period_s, ctx.device)

    def _teacher(self, config: ActorCriticConfig, ctx: LearnerContext) -> PlannerTeacher | None:
        """The teachers of ``teacher`` (its metrics then join :attr:`metric_keys`, and the engine gives
        the planner's :attr:`lookahead_h`); ConfigError if its other settings take none."""
        if config.teacher is None:
            return None
        for field, value in (("frozen", config.frozen), ("discomfort_limit", config.discomfort_limit)):
            if value:
                raise ConfigError(
                    f"learner.params.teacher: a learner with a teacher learns from its labels, neither frozen nor "
                    f"from priced rewards; unset {field}"
                )
        teacher = PlannerTeacher(config.teacher.planner, ctx)
        self.metric_keys = (*self.metric_keys, *TEACHER_KEYS)
        self.lookahead_h = teacher.lookahead_h
        return teacher

    def _priced(self, r: Rollout) -> tuple[Rollout, dict[str, float]]:
        """``r`` with every device's measured discomfort priced at its multiplier, which moves on it first
        (:mod:`fleet.learners.constraint`), and the multipliers' metrics; ``r`` and none without a limit."""
        if self.constraint is None:
            return r, {}
        rewards = self.constraint.penalized(r.rewards, self.adapter.discomfort(r))
        return replace(r, rewards=rewards), self.constraint.metrics()

    @property
    def update_every(self) -> int:
        """Control ticks between updates."""
        return self.cfg.n_steps

    def act(self, obs: Observation) -> np.ndarray:
        x = self.adapter.features(obs, self.device)
        if not self.learning:
            return self.core.act(x, self.gen, greedy=self.cfg.evaluate == "greedy").cpu().numpy()
        # with a teacher the policy acts greedily: the teacher teaches it in the states it reaches itself
        action = self._sample(x) if self.teacher is None else self.core.act(x, self.gen, greedy=True)
        level = action.cpu().numpy()
        if self.teacher is not None:
            self._labels.append(torch.as_tensor(self.teacher.label(obs, level), device=self.device))
        self._obs.append(x)
        self._actions.append(action)
        return level

    def _sample(self, x: torch.Tensor) -> torch.Tensor:
        """Every device's action (N,) drawn from its policy for features ``x`` (N, F), while learning."""
        return self.core.act(x, self.gen)

    def observe(self, reward: np.ndarray) -> None:
        if self.learning:
            self._rewards.append(torch.as_tensor(reward, dtype=torch.float32, device=self.device))

    def update(self, t: float) -> dict[str, float]:
        """Adapt (:meth:`update_local`); devices whose parameters then fail the check go back."""
        good = self.core.flat()
        metrics = self.update_local(t)
        if metrics:
            new = self.core.flat()
            if self._roll_back(self.core, new, good):
                self.core.load_flat(new)
        return metrics

    def _roll_back(self, core: ActorCritic, new: torch.Tensor, good: torch.Tensor) -> bool:
        """Put the devices whose ``new`` parameters (N, P) fail the check back to ``good`` (N, P):
        their rows of ``new`` in place, and restart their optimizer in ``core``. Whether any was."""
        bad = self.guard.roll_back(new, good)
        if not bad.any():
            return False
        core.restart(bad)
        return True

    def update_local(self, t: float) -> dict[str, float]:
        """The adapt step: learn on the complete transitions; the newest one waits for its successor's value."""
        steps = len(self._rewards) - 1
        metrics = {}
        if steps >= 1:
            metrics = self._learn(steps, t) if self.teacher is None else self._imitate(steps, t)
            del self._obs[:steps], self._actions[:steps], self._rewards[:steps], self._labels[:steps]
            self.updates += 1
        self._end_learning_at(t)
        return metrics

    def _learn(self, steps: int, t: float) -> dict[str, float]:
        """The actor-critic's steps on the first ``steps`` transitions of the experience."""
        rollout = Rollout(
            torch.stack(self._obs[: steps + 1]),
            torch.stack(self._actions[:steps]),
            torch.stack(self._rewards[:steps]),
        )
        rollout, priced = self._priced(rollout)
        shaped = self.adapter.shape_rewards(rollout, self.cfg, self.gamma)
        return {**self.core.update(shaped, self.gamma, actor=self.actor_learns(t)), **priced}

    def _imitate(self, steps: int, t: float) -> dict[str, float]:
        """The imitation steps on the teacher's labels of the first ``steps`` ticks, then its next plan if due."""
        obs = torch.stack(self._obs[:steps]).transpose(0, 1)  # (N, T, F)
        labels = torch.stack(self._labels[:steps]).T  # (N, T)
        return {**self.core.imitate(obs, labels), **self.teacher.replan(t)}

    def actor_learns(self, t: float) -> bool:
        """Whether the update at ``t`` trains the actor too: not before ``critic_warmup``."""
        return self.cfg.critic_warmup is None or t >= self.cfg.critic_warmup

    def _end_learning_at(self, t: float) -> None:
        """Stop learning if ``t`` is ``learn_until`` or later; the experience not learned from is dropped."""
        if self.learning and self.cfg.learn_until is not None and t >= self.cfg.learn_until:
            self.learning = False
            self._obs, self._actions, self._rewards, self._labels = [], [], [], []

    def flat_params(self) -> torch.Tensor:
        """Every device's parameters, (N, P)."""
        return self.core.flat()

    # --- checkpoints ---------------------------------------------------------------------

    STATE: ClassVar[tuple[str, ...]] = ("core", "gen", "updates", "learning", "guard")
    """Attributes that change as it learns (:mod:`fleet.statefile`); with ``buffers``, the
    experience not learned from yet, and with a ``discomfort_limit`` its ``constraint``. A subclass
    adds its own to these."""

    @property
    def _state_names(self) -> tuple[str, ...]:
        optional = ("constraint", "teacher")
        return (*self.STATE, *(name for name in optional if getattr(self, name) is not None))

    def state_dict(self) -> dict:
        """:attr:`STATE`, and ``buffers``: ``obs`` (N, F), ``actions`` (N,) and ``rewards`` (N,) per tick
        (with a teacher also its ``labels`` (N,) per tick)."""
        buffers = {"obs": self._obs, "actions": self._actions, "rewards": self._rewards}
        if self.teacher is not None:
            buffers["labels"] = self._labels
        return {**attrs_state(self, self._state_names), "buffers": buffers}

    def load_state_dict(self, state: dict) -> None:
        names = self._state_names
        expect_keys(state, (*names, "buffers"))
        load_attrs(self, {name: state[name] for name in names}, names)
        with within("buffers"):
            self._obs, self._actions, self._rewards, self._labels = self._buffers(state["buffers"])

    def _buffers(self, saved: dict) -> list[list[torch.Tensor]]:
        """The saved experience, checked: one action (and label) per observation, one reward per action
        (the last may still wait for its reward)."""
        n = self.ctx.n_devices
        keys = ("obs", "actions", "rewards") + (() if self.teacher is None else ("labels",))
        expect_keys(saved, keys)
        obs = array_list(saved, "obs", dtype=torch.float32, shape=(n, self.adapter.n_features))
        actions = array_list(saved, "actions", dtype=torch.int64, shape=(n,))
        rewards = array_list(saved, "rewards", dtype=torch.float32, shape=(n,))
        labels = array_list(saved, "labels", dtype=torch.int64, shape=(n,)) if self.teacher is not None else []
        if len(actions) != len(obs) or not len(obs) - 1 <= len(rewards) <= len(obs):
            counts = f"{len(obs)} observations, {len(actions)} actions and {len(rewards)} rewards"
            raise StateMismatch("", f"{counts} do not pair up")
        if self.teacher is not None and len(labels) != len(obs):
            raise StateMismatch("labels", f"{len(labels)} labels for {len(obs)} observations")
        return [[x.to(self.device) for x in saved_list] for saved_list in (obs, actions, rewards, labels)]

    def export_policy(self, device_index: int) -> dict[str, torch.Tensor]:
        """One device's actor as plain tensors (weights (in, out), biases (out,)), for a board."""
        return {
            f"{kind}{k}": t[device_index].detach().cpu().clone()
            for k, (w, b) in enumerate(zip(self.core.actor.weights, self.core.actor.biases))
            for kind, t in (("w", w), ("b", b))
        }


class DiffusionLearner(IndependentLearner):
    """Diffusion actor-critic over the neighbour graph, through the simulated network."""

    name: ClassVar[str] = "diffusion-v1"
    communicates: ClassVar[bool] = True
    exchange: ClassVar[str] = "neighbours"

    def __init__(self, config: DiffusionConfig, ctx: LearnerContext) -> None:
        super().__init__(config, ctx)
        self.topology = ctx.topology
        receiver, sender = ctx.topology.receiver, ctx.topology.sender
        self.receiver = torch.as_tensor(receiver, dtype=torch.long, device=self.device)
        deg = np.bincount(receiver, minlength=ctx.n_devices).astype(float)
        w = (
            1 / (1 + np.maximum(deg[receiver], deg[sender]))
            if config.weights == "metropolis"
            else 1 / (1 + deg[receiver])
        )
        self_w = (
            1 - np.bincount(receiver, w, minlength=ctx.n_devices) if config.weights == "metropolis" else 1 / (1 + deg)
        )
        self.weights = torch.as_tensor(w, dtype=torch.float32, device=self.device)
        self.self_weights = torch.as_tensor(self_w, dtype=torch.float32, device=self.device)
        p = self.core.flat().shape[1]
        dense = config.comm.k(p) >= p
        stored = torch.float16 if dense and config.comm.dtype == "float16" else torch.float32
        self.edge_params = torch.zeros(len(receiver), p, dtype=stored, device=self.device)
        """(E, P) the newest parameters received on each edge; float16 when every message is dense
        float16, since they decode to float16 values exactly."""
        self.edge_time = np.full(len(receiver), -np.inf)
        self.publisher = ParamPublisher(config.comm, ctx.n_devices, p)
        self.reconstruction = None if dense else ParamReceiver(len(receiver), p)
        """Each edge's top-k reconstruction; None when every message is dense (each replaces the last)."""
        self.staleness_s = config.staleness or 2 * config.n_steps * ctx.control_period_s

    @property
    def qos(self) -> int:
        return self.cfg.qos

    def inbox(self, kind: str, got: Deliveries) -> None:
        """Parameter messages that reached their receivers.

        Messages on unknown edges are rejected, and so are sparse ones under a dense policy
        (whose senders never publish them) and parameters that fail the guard's check (counted
        in ``guard.rejected``). Under a top-k policy messages go through each edge's
        reconstruction first. Once learning has ended, messages are not taken.
        """
        if not self.learning:
            return
        edge = self.topology.edge_index(got.receiver, got.sender)
        row = np.flatnonzero(edge >= 0)
        self.guard.rejected += len(edge) - len(row)
        edge, stamp = edge[row], got.published_at[row]
        if self.reconstruction is not None:
            values, ok = self.reconstruction.apply(edge, got.arrays_of(row), dense=len(got.arrays) == 1)
            self._store(edge[ok], stamp[ok], values, np.flatnonzero(ok))
        elif len(got.arrays) == 1:
            p = self.edge_params.shape[1]
            if got.arrays[0].shape[1:] != (p,):
                raise ValueError(
                    f"a dense message needs arrays [values (M, {p})], got shapes {[a.shape for a in got.arrays]}"
                )
            self._store(edge, stamp, got.arrays[0], got.msg[row])
        else:
            self.guard.rejected += len(row)

    def _store(self, edge: np.ndarray, stamp: np.ndarray, values: np.ndarray, row: np.ndarray) -> None:
        """Keep the newest parameters per edge from D messages in arrival order: ``edge``,
        ``stamp`` and ``row`` (D,), message i's parameters ``values[row[i]]`` (P,) of ``values``
        (M, P). Those that the guard rejects are left out; an edge with a message at least as new
        as what it holds takes the parameters of its last message."""
        ok = self.guard.accept(self.core.flat(), self.topology.receiver[edge], values, row)
        edge, stamp, row = edge[ok], stamp[ok], row[ok]
        newer = stamp >= self.edge_time[edge]
        last = last_per_edge(edge)
        take = last[np.isin(edge[last], edge[newer])]
        source = torch.as_tensor(values).to(self.edge_params)  # each message converted once
        copy_rows(self.edge_params, edge[take], source, row[take])
        self.edge_time[edge[newer]] = stamp[newer]

    def update(self, t: float) -> dict[str, float]:
        """Adapt, combine the previous round, add the step (module docstring: ψ(k+1) = θ(k) + Δ(k+1));
        devices whose parameters then fail the check go back."""
        adapted = self.core.flat()  # ψ(k), (N, P): what every device acted with and published
        metrics = self.update_local(t)
        if metrics:
            new = self.core.flat() - adapted  # Δ(k+1)
            new += self.combine(adapted, t)  # θ(k) + Δ(k+1)
            self._roll_back(self.core, new, adapted)
            self.core.load_flat(new)
        return metrics

    def combine(self, own: torch.Tensor, t: float) -> torch.Tensor:
        """(N, P) -> (N, P): combine with the fresh neighbour parameters."""
        cfg = self.cfg
        fresh = torch.as_tensor((t - self.edge_time) <= self.staleness_s, device=self.device)
        if cfg.robust == "median":
            return coordinate_median(neighbourhood_stack(own, self.edge_params, self.receiver, fresh))
        if cfg.robust == "trimmed-mean":
            return trimmed_mean(neighbourhood_stack(own, self.edge_params, self.receiver, fresh), cfg.trim)
        params = (
            clip_to_own(own, self.edge_params, self.receiver, cfg.clip_norm)
            if cfg.robust == "clip"
            else self.edge_params
        )
        return weighted_combine(own, params, self.receiver, self.weights, self.self_weights, fresh.float())

    def outbox(self, active: np.ndarray) -> list[tuple[str, Publication]]:
        """What the active devices publish after this update (per the communication policy);
        nothing once learning has ended."""
        if not self.learning:
            return []
        pub = self.publisher.outgoing(self.updates, self.core.flat().cpu().numpy(), active)
        return [] if pub is None else [("params", pub)]

    STATE: ClassVar[tuple[str, ...]] = (
        *IndependentLearner.STATE,
        "edge_params",
        "edge_time",
        "publisher",
        "reconstruction",
    )
