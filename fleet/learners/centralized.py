"""Centralized baseline: devices send experience up to one cloud learner, which trains a
single shared policy and broadcasts it back (the parameter-server pattern).

Devices act with their copy of the last policy they received; every update period each
device publishes its rollout (observations, actions, rewards, and the log-probability of each
action under the policy that took it) on its ``experience`` topic; the cloud trains on every
rollout that reached it and, every ``broadcast_every`` updates, publishes its parameters on
``fleet/cloud/collector/params`` to all devices. Both directions go through the simulated
network and count in the communication cost.

The data the cloud trains on is at least one update stale: the devices collected it with the
policy the cloud broadcast before (as quantized for the wire, or older where a broadcast was
lost). PPO's probability ratio is taken against the log-probabilities the devices recorded when
they acted, so it measures how far the cloud's policy has moved from the one that acted; the
cloud's own current parameters in their place would make the ratio 1 at the first epoch and
hide that distance from the clip.

With a ``teacher`` (``teacher: planner``, :mod:`fleet.learners.teacher`) the cloud imitates instead of
reinforcing: every device acts greedily with the policy it received, its own planner labels the
states it visits, and the fourth array of its experience message is those labels (the level, or
-1 where the planner had no advice; float16, exact for small integers) in place of the
log-probabilities, which only PPO's ratio reads. The cloud checks every label like any input from
the network: one that is not a level nor -1 is dropped (treated as -1) and counted
(``teacher/dropped_labels``). It then takes ``epochs`` imitation steps
(:meth:`fleet.learners.stacked.ActorCritic.imitate`) on the pooled labelled samples of all the
rollouts that arrived, one mean cross-entropy over them, and broadcasts as without a teacher; with no
label among them (before any device's planner has a model) it takes no step and counts no update.

With a ``discomfort_limit`` each device prices its own discomfort at its own multiplier
(:mod:`fleet.learners.constraint`) in the rewards it uploads: the cloud learns on the devices' Lagrangian.

The guard (:mod:`fleet.learners.guard`) checks both ends: a device rejects a policy that is
not finite, too large, or much larger than the one it has; the cloud goes back to its parameters
from before an update after which they fail the check, so it never broadcasts them.
"""

from __future__ import annotations

import re
from typing import ClassVar

import numpy as np
import torch

from fleet.learners.actor_critic import IndependentLearner
from fleet.learners.base import Deliveries, LearnerContext
from fleet.learners.comm import Publication
from fleet.learners.configs import CentralizedConfig
from fleet.learners.stacked import ActorCritic, Rollout
from fleet.learners.teacher import NO_LABEL
from fleet.mqtt.codec import DType
from fleet.statefile import StateMismatch, array, array_list, entry, within


class CentralizedLearner(IndependentLearner):
    """Devices upload rollouts; the cloud (endpoint N) trains and broadcasts the shared policy."""

    name: ClassVar[str] = "centralized-v1"
    communicates: ClassVar[bool] = True
    exchange: ClassVar[str] = "cloud"

    def __init__(self, config: CentralizedConfig, ctx: LearnerContext) -> None:
        super().__init__(config, ctx)
        self.cloud = ActorCritic(config, 1, self.adapter.n_features, ctx.n_levels, self.gen, ctx.device, shared=True)
        if config.init_policy:  # the devices' actors hold it already (IndependentLearner): read it once
            with torch.no_grad():
                for cloud, devices in zip(self.cloud.actor.parameters, self.core.actor.parameters):
                    cloud.copy_(devices[:1])
        self.cloud.anchor_here()
        self.core.load_flat(self.cloud.flat().expand(ctx.n_devices, -1))
        self.inbound: dict[int, list[list[torch.Tensor]]] = {}
        self.upload: tuple[torch.Tensor, ...] | None = None
        self._logp: list[torch.Tensor] = []
        """(N,) per tick: the log-probability of each device's action under the policy that took it."""
        self.cloud_updates = 0
        self.broadcast_due = False
        self.dropped_labels = 0
        """Labels the cloud received since its last update that were not a level nor -1."""
        if self.teacher is not None:
            self.metric_keys = (*self.metric_keys, "teacher/dropped_labels")

    @property
    def qos(self) -> int:
        return self.cfg.qos

    def inbox(self, kind: str, got: Deliveries) -> None:
        """``params`` to devices: load the newest policy that passes the guard's check;
        ``experience`` to the cloud: keep it. Nothing once learning has ended."""
        if not self.learning:
            return
        if kind == "params":
            dev = np.flatnonzero(got.receiver < self.ctx.n_devices)
            order = dev[np.argsort(got.published_at[dev], kind="stable")]  # newest last: it wins
            flat, policy = self.core.flat(), got.arrays[0]
            order = order[self.guard.accept(flat, got.receiver[order], policy, got.msg[order])]
            flat = flat.clone()
            flat[got.receiver[order]] = torch.as_tensor(policy[got.msg[order]]).to(flat)
            self.core.load_flat(flat)
        elif kind == "experience":
            obs, actions, rewards, last = (torch.as_tensor(a, device=self.device) for a in got.arrays_of())
            last = last.float() if self.teacher is None else self._checked_labels(last)
            steps = actions.shape[1]
            self.inbound.setdefault(steps, []).append(
                [obs.float().transpose(0, 1), actions.round().long().T, rewards.float().T, last.T]
            )

    def _checked_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Received labels (D, T) float as int64, each that is not a level nor -1 (NO_LABEL) made -1 and counted."""
        good = (labels == labels.round()) & (labels >= NO_LABEL) & (labels < self.ctx.n_levels)
        self.dropped_labels += int((~good).sum())
        return torch.where(good, labels, NO_LABEL).long()

    def _sample(self, x: torch.Tensor) -> torch.Tensor:
        action, logp = self.core.sample(x, self.gen)
        self._logp.append(logp)
        return action

    def update(self, t: float) -> dict[str, float]:
        """Package the devices' complete transitions for upload; train the cloud on what arrived.
        From ``learn_until`` on, nothing: the devices keep the policy they last received, and
        nothing the cloud learned now could reach them."""
        self._end_learning_at(t)
        if not self.learning:
            return {}
        steps = len(self._rewards) - 1
        own_metrics: dict[str, float] = {}
        if steps >= 1:
            self.upload, own_metrics = self._package(steps)
            del self._obs[:steps], self._actions[:steps], self._rewards[:steps], self._logp[:steps]
            del self._labels[:steps]
            if self.teacher is not None:
                own_metrics = self.teacher.replan(t)  # the devices' planners' metrics at a re-plan
        metrics: dict[str, float] = {}
        good = self.cloud.flat()
        for batches in self.inbound.values():
            obs, actions, rewards, last = (torch.cat(parts, dim=1) for parts in zip(*batches))
            if self.teacher is None:
                rollout = self.adapter.shape_rewards(Rollout(obs, actions, rewards, logp=last), self.cfg, self.gamma)
                metrics = self.cloud.update(rollout, self.gamma, actor=self.actor_learns(t))
            elif (last >= 0).any():  # obs (T+1, D, F), labels (T, D): one pool of T * D samples
                metrics = self.cloud.imitate(obs[:-1].reshape(1, -1, obs.shape[-1]), last.reshape(1, -1))
            else:
                continue
            self.cloud_updates += 1
            self.broadcast_due |= self.cloud_updates % self.cfg.broadcast_every == 0
        self.inbound = {}
        if metrics:
            new = self.cloud.flat()
            if self._roll_back(self.cloud, new, good):
                self.cloud.load_flat(new)
        if self.teacher is not None:
            metrics["teacher/dropped_labels"], self.dropped_labels = self.dropped_labels, 0
        self.updates += 1
        return {**metrics, **own_metrics}

    def _package(self, steps: int) -> tuple[tuple[torch.Tensor, ...], dict[str, float]]:
        """The first ``steps`` transitions for upload, obs (T+1, N, F), actions (T, N), rewards (T, N) and
        logp (T, N), or with a teacher its labels (T, N) in place of logp; and the metrics of pricing them."""
        obs, actions = torch.stack(self._obs[: steps + 1]), torch.stack(self._actions[:steps])
        rewards = torch.stack(self._rewards[:steps])
        if self.teacher is not None:
            return (obs, actions, rewards, torch.stack(self._labels[:steps])), {}
        own = Rollout(obs, actions, rewards, logp=torch.stack(self._logp[:steps]))
        own, priced = self._priced(own)  # each device prices its discomfort at its own multiplier
        return (own.obs, own.actions, own.rewards, own.logp), priced

    def _end_learning_at(self, t: float) -> None:
        super()._end_learning_at(t)
        if not self.learning:
            self.upload, self.broadcast_due, self._logp = None, False, []

    def outbox(self, active: np.ndarray) -> list[tuple[str, Publication]]:
        out = []
        if self.upload is not None:
            sender = np.flatnonzero(active)
            obs, actions, rewards, last = (
                x.transpose(0, 1)[torch.as_tensor(sender)].cpu().numpy() for x in self.upload
            )
            dtypes = self.cfg.experience_dtypes()
            arrays = [obs, actions.astype(np.float32), rewards, last.astype(np.float32)]
            out.append(("experience", Publication(sender, arrays, dtypes, True)))
            self.upload = None
        if self.broadcast_due:
            params = self.cloud.flat().cpu().numpy()
            wire = DType[self.cfg.params_dtype.upper()]
            out.append(("params", Publication(np.array([self.ctx.n_devices]), [params], [wire], True)))
            self.broadcast_due = False
        return out

    STATE: ClassVar[tuple[str, ...]] = IndependentLearner.STATE + ("cloud", "cloud_updates", "broadcast_due")
    """With ``inbound`` (rollouts the cloud received, by their number of steps), ``upload`` and
    ``logp`` (the log-probabilities of the actions not uploaded yet); with a teacher ``dropped_labels``."""

    @property
    def _state_names(self) -> tuple[str, ...]:
        return (*super()._state_names, *(("dropped_labels",) if self.teacher is not None else ()))

    def state_dict(self) -> dict:
        """``inbound``: steps T -> [[obs (T+1, D, F), actions (T, D), rewards (T, D), logp (T, D)], ...];
        ``upload``: None or [obs (T+1, N, F), actions (T, N), rewards (T, N), logp (T, N)]; ``logp``: (N,) per
        action not uploaded yet (none with a teacher, whose labels (T, D) int64 take logp's place)."""
        inbound = {str(k): v for k, v in self.inbound.items()}
        return {**super().state_dict(), "inbound": inbound, "upload": self.upload, "logp": self._logp}

    def load_state_dict(self, state: dict) -> None:
        extra = ("inbound", "upload", "logp")
        super().load_state_dict({k: v for k, v in state.items() if k not in extra})
        logp = array_list(state, "logp", dtype=torch.float32, shape=(self.ctx.n_devices,))
        expected = len(self._actions) if self.teacher is None else 0  # a policy taught acts greedily
        if len(logp) != expected:
            raise StateMismatch("logp", f"{len(logp)} log-probabilities for {expected} sampled actions")
        inbound = {}
        for steps, parts in entry(state, "inbound", dict).items():
            with within(f"inbound.{steps}"):
                if not re.fullmatch(r"[1-9][0-9]{0,8}", steps) or not isinstance(parts, list):
                    raise StateMismatch("", "expected a number of steps (1 or more) with a list of rollouts")
                inbound[int(steps)] = [self._rollout(part, int(steps), None, i) for i, part in enumerate(parts)]
        upload = entry(state, "upload")
        self.upload = None if upload is None else self._rollout(upload, None, self.ctx.n_devices, "upload")
        self.inbound = inbound
        self._logp = [x.to(self.device) for x in logp]

    def _rollout(
        self, saved: object, steps: int | None, devices: int | None, key: str | int
    ) -> tuple[torch.Tensor, ...]:
        """Saved ``[obs (T+1, D, F) float32, actions (T, D) int64, rewards (T, D) float32, logp (T, D)
        float32 or with a teacher labels (T, D) int64]`` at ``key``, on this learner's device (``steps`` T and
        ``devices`` D: None for any)."""
        with within(str(key)):
            if not isinstance(saved, list) or len(saved) != 4:
                last = "logp" if self.teacher is None else "labels"
                raise StateMismatch("", f"expected [obs, actions, rewards, {last}]")
            with within("1"):
                actions = array(saved[1], dtype=torch.int64, shape=(steps, devices))
            t, d = actions.shape
            with within("0"):
                obs = array(saved[0], dtype=torch.float32, shape=(t + 1, d, self.adapter.n_features))
            per_step = []
            for i, dtype in ((2, torch.float32), (3, torch.float32 if self.teacher is None else torch.int64)):
                with within(str(i)):
                    per_step.append(array(saved[i], dtype=dtype, shape=(t, d)))
        return tuple(x.to(self.device) for x in (obs, actions, *per_step))
