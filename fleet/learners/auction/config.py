"""The typed configs of the bidding society (:mod:`fleet.learners.auction.society`) and of the
``auction-v1`` learner, apart from their torch code (reading a scenario imports no torch).

The defaults are the reference's (mbchang/decentralized-rl, ``starter_code/infrastructure/configs.py``):
PPO with policy and value learning rates 4e-5 and 5e-3, entropy weight 0.1, one epoch of
minibatches of 256, clip 0.2, an L2 penalty of 1e-3 on the value network, one hidden layer of
16 units, redundancy 2 and the credit-conserving Vickrey mechanism.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from fleet.config import FiniteFloat, PositiveDuration, StrictModel
from fleet.errors import ConfigError

Mechanism = Literal["ccv", "vickrey", "bucket-brigade", "env"]
"""How the winner of an auction is paid (``U`` its utility, ``b1``/``b2`` the highest and
second-highest bids, ``γ`` the discount per step; losers get 0):

- ``ccv``, credit-conserving Vickrey: ``U_t = r_t + γ b2_{t+1} - b2_t``: the winner at t pays the
  second-highest bid at t to the winner at t-1, so no credit is made or lost between steps;
- ``vickrey``: ``U_t = r_t + γ b1_{t+1} - b2_t``;
- ``bucket-brigade``: ``U_t = r_t + γ b1_{t+1} - b1_t`` (the winner pays its own bid);
- ``env``: ``U_t = r_t`` (the environment's reward, no payments).

The lookahead bid is 0 after the last step of an episode."""


class SocietyConfig(StrictModel):
    """Hyperparameters of a society of bidding primitives and of their PPO."""

    hidden: Annotated[int, Field(ge=1, le=1024)] = 16
    """Width of the one hidden layer (ReLU) of every primitive's bidding network and value network."""
    redundancy: Annotated[int, Field(ge=1, le=64)] = 2
    """Clones per primitive: copies that bid independently from the same policy, so that a primitive always
    has a competitor at its own valuation (the cloned Vickrey society); 1: no clones."""
    mechanism: Mechanism = "ccv"
    """Auction mechanism (see :data:`Mechanism`): ``ccv`` (default), ``vickrey``, ``bucket-brigade``, ``env``."""
    policy_lr: Annotated[float, Field(gt=0, le=1)] = 4e-5
    """Adam learning rate of the bidding networks."""
    policy_lr_halflife: Annotated[int, Field(ge=1)] | None = None
    """Policy steps (minibatches) over which the policy learning rate halves; None: constant. The reference
    anneals it too (mbchang/decentralized-rl, ``training_config``: x0.99 every 100 updates after the 500th);
    a society whose rate stays high keeps its bids wandering by a few hundredths about the equilibrium."""
    value_lr: Annotated[float, Field(gt=0, le=1)] = 5e-3
    """Adam learning rate of the value networks."""
    entropy_coef: Annotated[float, Field(ge=0)] = 0.1
    """Weight of the Beta distribution's entropy in the bidding loss."""
    clip: Annotated[float, Field(gt=0, lt=1)] = 0.2
    """PPO clip range of the probability ratio."""
    epochs: Annotated[int, Field(ge=1, le=100)] = 1
    """Passes over the experience per update."""
    batch_size: Annotated[int, Field(ge=1)] = 256
    """Samples (steps x clones) of each primitive per minibatch."""
    value_l2: Annotated[float, Field(ge=0)] = 1e-3
    """Weight of the squared parameters of the value network in its loss."""
    max_grad_norm: Annotated[float, Field(gt=0)] = 40.0
    """Clipping of each primitive's bidding gradient norm."""
    dropout: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Agent dropout, the share of auctions in which a device silences a random subset of its bidders (at least
    two stay; 0: never, 1: every auction), so that every primitive also bids without the stronger ones and learns
    its own value, not only to lose. The reference's ``--ado`` (mbchang/decentralized-rl, ``Society.agent_dropout``)
    draws it once per episode, and with cloned bidders its auction ignores it; here it is drawn per auction. The
    winner before a silenced auction looks ahead to every draw, silenced ones included (``society.utilities``);
    on the chain a share of 0.5 brings the loser to its value (docs/studies/auction.md)."""


class MarketConfig(StrictModel):
    """The feeder market between the devices of a site (:mod:`fleet.sim.market`)."""

    period: PositiveDuration | None = None
    """Time between two market rounds; None: no market, every device controls alone. At least the control
    period."""
    window: PositiveDuration = 10.0
    """Seconds after the start of a round at which the auctioneer clears it: a bid that has not arrived by
    then is no bid. Shorter than ``period``."""
    price_per_kwh: FiniteFloat = Field(1.0, gt=0)
    """Money per kWh that a bid of 1 offers: a device bids its winning primitive's valuation (in [0, 1]) times
    this for each kWh it wants."""
    qos: Literal[0, 1] = 0
    """MQTT QoS of bids and clearings."""
    grant: Literal["cap", "run"] = "run"
    """What a device does with the power it was granted, until its grant expires: ``run``, it runs at its highest
    level within the grant (the power it bought); ``cap``, its society chooses every tick as alone, capped at
    that level. On feeder-peak-v1 (one day, 15-minute rounds, seeds 0-2) capped devices drew 6,669 kWh a day of
    the feeders' 11,520 (their society chose below the grant) at 26,137 °C·h of discomfort; running at the
    grant drew 11,408 kWh at 11,142 °C·h, with 9 kWh of overload (docs/studies/auction.md)."""
    grant_hold: PositiveDuration | None = None
    """How long a grant holds after its round's clearing is due when no newer clearing reaches the device (its
    bid or the clearing lost), at least ``period``; None: four periods (1 h at 15-minute rounds). A device
    whose grant has expired controls alone. Tuned on feeder-peak-v1's seeds 0-2 over 3 days with NB-IoT's
    bursty loss (feeder-tune-auction-hold.yaml): a grant held one period let lost clearings leave devices on
    their own on full feeders, 1,503 kWh of overload; two periods 981, four 663 (reward within noise)."""
    valuation: Literal["value", "margin"] = "value"
    """What a device offers per kWh (before ``price_per_kwh``): ``value``, its winning primitive's bid (its
    society's value of the state and level); ``margin``, that bid less the best bid of its lowest level (what
    it would lose if it got no power), at least 0. Values rank a cold house, whose future holds discomfort,
    below a warm one that needs nothing; margins rank by need."""

    @property
    def hold_s(self) -> float:
        """Seconds a grant holds after its round's clearing is due: ``grant_hold``, or four periods."""
        return self.grant_hold if self.grant_hold is not None else 4 * self.period

    def checked(self, control_period_s: float) -> MarketConfig:
        """Itself, or a ConfigError naming ``learner.params.market.period``, ``.grant_hold`` or ``.window``."""
        if self.period is not None and self.period < control_period_s:
            raise ConfigError(
                f"learner.params.market.period: a market round ({self.period:g} s) cannot be shorter than the "
                f"control period ({control_period_s:g} s)"
            )
        if self.period is not None and self.grant_hold is not None and self.grant_hold < self.period:
            raise ConfigError(
                f"learner.params.market.grant_hold: a grant must hold ({self.grant_hold:g} s) at least until the next "
                f"round's clearing is due, one period ({self.period:g} s)"
            )
        if self.period is not None and self.window >= self.period:
            raise ConfigError(
                f"learner.params.market.window: the auctioneer must clear a round ({self.window:g} s after its "
                f"start) before the next begins ({self.period:g} s)"
            )
        return self


class AuctionConfig(SocietyConfig):
    """``auction-v1``: on every device a society with one primitive per heat-pump level."""

    discount_horizon: PositiveDuration = 6 * 3600.0
    """Time over which the discount falls to 1/e: ``γ = exp(-control_period / discount_horizon)`` per tick."""
    n_steps: Annotated[int, Field(ge=1, le=100_000)] = 240
    """Control ticks between updates; each primitive learns from ``n_steps * redundancy`` samples."""
    policy_lr: Annotated[float, Field(gt=0, le=1)] = 1e-3
    """Adam learning rate of the bidding networks; faster than the reference's 4e-5, which needs millions of
    samples, more than a simulated month of one house gives."""
    reward_range_per_h: FiniteFloat = Field(6.0, gt=0)
    """The scenario's worst reward rate (cost + discomfort + overload, money per hour) that bids can express:
    bids lie in [0, 1], so each tick's reward ``r`` (≤ 0) enters the society as
    ``(1 - γ) * clip(1 + r / (reward_range_per_h * control_period / 1h), 0, 1)`` and values in [0, 1]."""
    market: MarketConfig = MarketConfig()
    """The feeder market; off (``period`` None) unless set."""
