"""``auction-v1``: on every thermostat a cloned Vickrey society whose primitives are its heat-pump levels.

Each device's society has one primitive per HVAC power level (with ``redundancy`` clones); every
control tick the primitives bid on the device's features (:func:`fleet.learners.features.features`)
and the winner's level is applied. The device's reward (cost, discomfort and overload, as for every
learner; at most 0) becomes a bid-scaled reward in ``[0, 1 - γ]`` (:attr:`AuctionConfig.reward_range_per_h`),
so that a primitive's value, the discounted sum of those rewards, is a bid in [0, 1]. Every
``n_steps`` ticks all primitives of all devices learn by PPO on their utilities
(:class:`~fleet.learners.auction.society.Society`). Devices learn alone: no messages.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from fleet.learners.auction.config import AuctionConfig, gamma_per_tick
from fleet.learners.auction.society import METRIC_KEYS, Society
from fleet.learners.base import LearnerContext, Observation
from fleet.learners.features import N_FEATURES, features
from fleet.statefile import attrs_state, expect_keys, load_attrs, load_child


class AuctionLearner:
    """A society of bidding heat-pump levels on every device."""

    name: ClassVar[str] = "auction-v1"
    communicates: ClassVar[bool] = False
    exchange: ClassVar[str] = "none"
    metric_keys: ClassVar[tuple[str, ...]] = METRIC_KEYS

    def __init__(self, config: AuctionConfig, ctx: LearnerContext) -> None:
        self.cfg, self.ctx, self.device = config, ctx, ctx.device
        self.gamma = gamma_per_tick(config.discount_horizon, ctx.control_period_s)
        self.reward_range = config.reward_range_per_h * ctx.control_period_s / 3600.0
        """The worst reward of one tick that bids can express."""
        self.gen = torch.Generator(device=ctx.device).manual_seed(int(ctx.rng.integers(2**62)))
        self.society = Society(config, ctx.n_devices, N_FEATURES, ctx.n_levels, self.gamma, self.gen)

    @property
    def update_every(self) -> int:
        """Control ticks between updates."""
        return self.cfg.n_steps

    def act(self, obs: Observation) -> np.ndarray:
        x = features(obs, self.device)
        auction = self.society.auction(x)
        self.society.record(x, auction)
        return auction.primitive.cpu().numpy()

    def observe(self, reward: np.ndarray) -> None:
        """Scale the reward (N,) of the last action into the bids' range (module docstring)."""
        r = torch.as_tensor(reward, dtype=torch.float32, device=self.device)
        self.society.reward((1 - self.gamma) * (1 + r / self.reward_range).clamp(0.0, 1.0))

    def update(self, t: float) -> dict[str, float]:
        return self.society.update()

    STATE: ClassVar[tuple[str, ...]] = ("gen",)

    def state_dict(self) -> dict:
        """``society`` (networks, optimizers, experience) and the generator ``gen`` of its bids."""
        return {**attrs_state(self, self.STATE), "society": self.society.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        expect_keys(state, (*self.STATE, "society"))
        load_attrs(self, {name: state[name] for name in self.STATE}, self.STATE)
        load_child(state, "society", self.society)

    def export_policy(self, device_index: int) -> dict[str, torch.Tensor]:
        """One device's bidding networks as plain tensors: ``w0`` (P, F, H), ``b0`` (P, H), ``w1`` (P, H, 2),
        ``b1`` (P, 2)."""
        names = ("w0", "b0", "w1", "b1")
        return {k: t[device_index].detach().cpu().clone() for k, t in zip(names, self.society.policy.parameters)}
