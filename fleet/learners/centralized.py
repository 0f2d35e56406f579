"""Centralized baseline: devices send experience up to one cloud learner, which trains a
single shared policy and broadcasts it back (the parameter-server pattern).

Devices act with their copy of the last policy they received; every update period each
device publishes its rollout (observations, actions, rewards) on its ``experience`` topic;
the cloud trains on every rollout that reached it and, every ``broadcast_every`` updates,
publishes its parameters on ``fleet/cloud/collector/params`` to all devices. Both directions
go through the simulated network and count in the communication cost.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from fleet.learners.actor_critic import IndependentLearner
from fleet.learners.base import Deliveries, LearnerContext
from fleet.learners.comm import Publication
from fleet.learners.features import N_FEATURES
from fleet.learners.stacked import ActorCritic, ActorCriticConfig, Coefficient, Epochs, Rollout
from fleet.mqtt.codec import DType, encoded_size


class CentralizedConfig(ActorCriticConfig):
    """One shared policy trained in the cloud from the devices' uploaded experience."""

    epochs: Epochs = 4
    """PPO epochs on each batch of every device's rollouts (one network, much data)."""
    entropy_coef: Coefficient = 0.003
    """A smaller entropy bonus than the per-device learners'."""

    broadcast_every: Annotated[int, Field(ge=1)] = 1
    """Cloud updates between two broadcasts of the policy."""
    experience_dtype: Literal["float32", "float16"] = "float16"
    """Encoding of uploaded observations and rewards."""
    params_dtype: Literal["float32", "float16", "int8"] = "float32"
    """Encoding of the broadcast policy."""
    qos: Literal[0, 1] = 1
    """MQTT QoS of experience and policy messages."""


class CentralizedLearner(IndependentLearner):
    """Devices upload rollouts; the cloud (endpoint N) trains and broadcasts the shared policy."""

    name: ClassVar[str] = "centralized-v1"
    communicates: ClassVar[bool] = True
    exchange: ClassVar[str] = "cloud"
    smaller_messages: ClassVar[tuple[str, ...]] = (
        "params_dtype=float16", "params_dtype=int8", "experience_dtype=float16",
    )

    @classmethod
    def message_sizes(cls, config: CentralizedConfig, n_levels: int) -> dict[str, int]:
        """``experience``: a device's rollout of ``n_steps`` transitions (observations (T+1, F),
        actions (T,), rewards (T,)); ``params``: the cloud's P parameters."""
        t, experience = config.n_steps, DType[config.experience_dtype.upper()]
        p = ActorCritic.param_count(config.hidden, N_FEATURES, n_levels)
        return {
            "experience": encoded_size([experience, DType.FLOAT16, experience], [(t + 1, N_FEATURES), (t,), (t,)]),
            "params": encoded_size(DType[config.params_dtype.upper()], [(p,)]),
        }

    def __init__(self, config: CentralizedConfig, ctx: LearnerContext) -> None:
        super().__init__(config, ctx)
        self.cloud = ActorCritic(config, 1, N_FEATURES, ctx.n_levels, self.gen, ctx.device, shared=True)
        if config.init_policy:  # the devices' actors hold it already (IndependentLearner): read it once
            with torch.no_grad():
                for cloud, devices in zip(self.cloud.actor.parameters, self.core.actor.parameters):
                    cloud.copy_(devices[:1])
        self.core.load_flat(self.cloud.flat().expand(ctx.n_devices, -1))
        self.inbound: dict[int, list[list[torch.Tensor]]] = {}
        self.upload: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.cloud_updates = 0
        self.broadcast_due = False

    @property
    def qos(self) -> int:
        return self.cfg.qos

    def inbox(self, kind: str, got: Deliveries) -> None:
        """``params`` to devices: load the newest policy; ``experience`` to the cloud: keep it.
        Nothing once learning has ended."""
        if not self.learning:
            return
        if kind == "params":
            dev = np.flatnonzero(got.receiver < self.ctx.n_devices)
            order = dev[np.argsort(got.published_at[dev], kind="stable")]  # newest last: it wins
            flat = self.core.flat().clone()
            flat[got.receiver[order]] = torch.as_tensor(got.arrays_of(order)[0], dtype=torch.float32, device=self.device)
            self.core.load_flat(flat)
        elif kind == "experience":
            obs, actions, rewards = (torch.as_tensor(a, device=self.device) for a in got.arrays_of())
            steps = actions.shape[1]
            self.inbound.setdefault(steps, []).append([obs.float().transpose(0, 1), actions.round().long().T, rewards.float().T])

    def update(self, t: float) -> dict[str, float]:
        """Package the devices' complete transitions for upload; train the cloud on what arrived.
        From ``learn_until`` on, nothing: the devices keep the policy they last received, and
        nothing the cloud learned now could reach them."""
        self._end_learning_at(t)
        if not self.learning:
            return {}
        steps = len(self._rewards) - 1
        if steps >= 1:
            self.upload = (torch.stack(self._obs[: steps + 1]), torch.stack(self._actions[:steps]), torch.stack(self._rewards[:steps]))
            del self._obs[:steps], self._actions[:steps], self._rewards[:steps]
        metrics: dict[str, float] = {}
        for batches in self.inbound.values():
            obs, actions, rewards = (torch.cat(parts, dim=1) for parts in zip(*batches))
            metrics = self.cloud.update(Rollout(obs, actions, rewards))
            self.cloud_updates += 1
            self.broadcast_due |= self.cloud_updates % self.cfg.broadcast_every == 0
        self.inbound = {}
        self.updates += 1
        return metrics

    def _end_learning_at(self, t: float) -> None:
        super()._end_learning_at(t)
        if not self.learning:
            self.upload, self.broadcast_due = None, False

    def outbox(self, active: np.ndarray) -> list[tuple[str, Publication]]:
        out = []
        if self.upload is not None:
            sender = np.flatnonzero(active)
            obs, actions, rewards = (x.transpose(0, 1)[torch.as_tensor(sender)].cpu().numpy() for x in self.upload)
            dtype = DType[self.cfg.experience_dtype.upper()]  # actions (small integers) are exact in float16
            out.append(("experience", Publication(sender, [obs, actions.astype(np.float32), rewards], [dtype, DType.FLOAT16, dtype], True)))
            self.upload = None
        if self.broadcast_due:
            params = self.cloud.flat().cpu().numpy()
            wire = DType[self.cfg.params_dtype.upper()]
            out.append(("params", Publication(np.array([self.ctx.n_devices]), [params], [wire], True)))
            self.broadcast_due = False
        return out

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "cloud": self.cloud.state_dict(),
            "cloud_updates": self.cloud_updates,
            "inbound": {k: [[x.cpu() for x in part] for part in v] for k, v in self.inbound.items()},
            "upload": None if self.upload is None else tuple(x.cpu() for x in self.upload),
            "broadcast_due": self.broadcast_due,
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.cloud.load_state_dict(state["cloud"])
        self.cloud_updates = state["cloud_updates"]
        self.inbound = {k: [[x.to(self.device) for x in part] for part in v] for k, v in state["inbound"].items()}
        self.upload = None if state["upload"] is None else tuple(x.to(self.device) for x in state["upload"])
        self.broadcast_due = state["broadcast_due"]
