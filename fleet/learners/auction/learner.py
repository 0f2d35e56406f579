"""``auction-v1``: on every thermostat a cloned Vickrey society whose primitives are its heat-pump levels.

Each device's society has one primitive per HVAC power level (with ``redundancy`` clones); every
control tick the primitives bid on the device's features (:func:`fleet.learners.features.features`)
and the winner's level is applied. The device's reward (cost, discomfort and overload, as for every
learner; at most 0) becomes a bid-scaled reward in ``[0, 1 - γ]`` (:attr:`AuctionConfig.reward_range_per_h`),
so that a primitive's value, the discounted sum of those rewards, is a bid in [0, 1]. Every
``n_steps`` ticks all primitives of all devices learn by PPO on their utilities
(:class:`~fleet.learners.auction.society.Society`). Devices learn alone.

With a market (``market.period`` set) the devices of a site also trade their feeder's capacity
(:mod:`fleet.sim.market`): each round a device bids its winning primitive's bid for the power of its
level; once the round is cleared it runs at what it was granted (its highest level within it; with
``market.grant: cap``, its society's level capped there) and pays the site's price on what it draws,
which enters its reward, until a newer clearing replaces its grant or the grant expires (``market.grant_hold``,
four periods by default, after its round's clearing was due: a lost clearing leaves it on its grant). A device
that never heard a clearing, or whose grant expired, controls alone.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from fleet.errors import ConfigError
from fleet.learners.auction.config import AuctionConfig
from fleet.learners.auction.society import METRIC_KEYS, Society
from fleet.learners.base import Deliveries, LearnerContext, Observation
from fleet.learners.configs import discount_per_step
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
        self.gamma = discount_per_step(config.discount_horizon, ctx.control_period_s)
        self.reward_range = config.reward_range_per_h * ctx.control_period_s / 3600.0
        """The worst reward of one tick that bids can express."""
        self.gen = torch.Generator(device=ctx.device).manual_seed(int(ctx.rng.integers(2**62)))
        self.society = Society(config, ctx.n_devices, N_FEATURES, ctx.n_levels, self.gamma, self.gen)
        self.market = config.market.checked(ctx.control_period_s).period is not None
        """Whether the devices trade in a feeder market."""
        if self.market and ctx.levels_kw is None:
            raise ConfigError(
                "learner.params.market.period: the feeder market needs the kW of every HVAC level, which the "
                "simulator and the edge agent give their learner (this context has none); leave the market unset here"
            )
        self.levels_kw = np.zeros((ctx.n_devices, ctx.n_levels)) if ctx.levels_kw is None else ctx.levels_kw
        """(N, L) kW of each device's levels (its own heat pump's), ascending."""
        n = ctx.n_devices
        self.grant_kw = np.full(n, np.inf)
        """(N,) kW each device may draw while its grant holds."""
        self.grant_price = np.zeros(n)
        """(N,) valuation per kWh it pays on what it draws (times ``market.price_per_kwh``: money)."""
        self.grant_until = np.full(n, -np.inf)
        """(N,) when its grant expires."""
        self.bid_round = np.full(n, -np.inf)
        """(N,) the round each device last bid in."""
        self.now = 0.0
        """Time of the last market delivery (every control tick with a market)."""
        self.bid = np.zeros(n)
        """(N,) the winning bid of each device's last auction."""
        self.margin = np.zeros(n)
        """(N,) that bid less the best bid of the device's lowest level, at least 0."""
        self.wanted = np.zeros(n, np.int64)
        """(N,) the level each device's last auction chose."""
        self.applied = np.zeros(n, np.int64)
        """(N,) the level each device last ran at (``wanted``, or less under a grant)."""

    @property
    def update_every(self) -> int:
        """Control ticks between updates."""
        return self.cfg.n_steps

    def act(self, obs: Observation) -> np.ndarray:
        """Every device's auction; under a grant, its level is the highest within the kW granted."""
        x = features(obs, self.device)
        auction = self.society.auction(x)
        self.society.record(x, auction)
        self.bid = auction.first.cpu().numpy().astype(float)
        self.margin = np.clip(self.bid - auction.bids[:, 0].amax(1).cpu().numpy(), 0.0, 1.0)
        level = self.wanted = auction.primitive.cpu().numpy()
        if self.market:
            # levels in ascending kW, compared at the wire's float32: a grant of a level's kW holds that level
            fits = self.levels_kw.astype(np.float32) <= self.grant_kw[:, None].astype(np.float32)
            cap = fits.sum(1) - 1
            cap = np.maximum(cap, 0)
            level = np.where(self._granted(), cap if self.cfg.market.grant == "run" else np.minimum(level, cap), level)
        self.applied = level
        return level

    def _granted(self) -> np.ndarray:
        return self.now < self.grant_until

    def observe(self, reward: np.ndarray) -> None:
        """Scale the reward (N,) of the last action, less the market's price on the energy drawn under a grant,
        into the bids' range (module docstring)."""
        if self.market:
            kwh = (
                np.take_along_axis(self.levels_kw, self.applied[:, None], 1)[:, 0] * self.ctx.control_period_s / 3600.0
            )
            reward = reward - np.where(self._granted(), self.grant_price * self.cfg.market.price_per_kwh * kwh, 0.0)
        r = torch.as_tensor(reward, dtype=torch.float32, device=self.device)
        self.society.reward((1 - self.gamma) * (1 + r / self.reward_range).clamp(0.0, 1.0))

    def update(self, t: float) -> dict[str, float]:
        return self.society.update()

    # --- the feeder market ---------------------------------------------------------------------

    def market_bids(self, t: float, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The bids of the ``active`` (N,) devices for the round at ``t``: (senders (M,), bids (M, 2) float32
        ``[valuation, kW of its level]``, the valuation as ``market.valuation`` says)."""
        sender = np.flatnonzero(active)
        self.bid_round[sender] = t
        offer = self.margin if self.cfg.market.valuation == "margin" else self.bid
        return sender, np.stack([offer[sender], self.levels_kw[sender, self.wanted[sender]]], 1).astype(np.float32)

    def market_inbox(self, t: float, got: list[Deliveries]) -> None:
        """The clearings that reached the devices by ``t`` (arrays: winners, kW, price, each (M, K)): a device
        that bid in the cleared round takes its grant (nothing if it did not win) until the next is due."""
        self.now = t
        cfg = self.cfg.market
        for d in got:
            winners, kw, price = d.arrays_of()
            round_t = d.published_at - cfg.window
            for j, i in enumerate(d.receiver):
                if not np.isclose(self.bid_round[i], round_t[j], rtol=0, atol=1e-6):
                    continue
                hit = np.flatnonzero(winners[j] == i)[:1]
                self.grant_kw[i] = kw[j][hit].sum()
                self.grant_price[i] = price[j][hit].sum()
                self.grant_until[i] = round_t[j] + cfg.hold_s + cfg.window

    STATE: ClassVar[tuple[str, ...]] = (
        "gen",
        "grant_kw",
        "grant_price",
        "grant_until",
        "bid_round",
        "now",
        "bid",
        "margin",
        "wanted",
        "applied",
    )

    def state_dict(self) -> dict:
        """``society`` (networks, optimizers, experience), the generator ``gen`` of its bids and the market's
        state of every device."""
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
