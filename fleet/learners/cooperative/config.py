"""The typed config of the cooperative-control core, apart from its torch code.

Durations, not tick counts: the discount and the exploration schedule are set in time and
turned into per-tick values with the control period (:meth:`CooperativeConfig.gamma`,
:meth:`CooperativeConfig.epsilon`), so a scenario can change its period without retuning.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from fleet.config import PositiveDuration, StrictModel
from fleet.learners.configs import discount_per_step

Rate = Annotated[float, Field(gt=0, lt=1)]
Share = Annotated[float, Field(ge=0)]


class CooperativeConfig(StrictModel):
    """Hyperparameters of the deep Q-learner with TER, IER and IQL (each can be switched off;
    all three off is an independent DQN per device)."""

    hidden: Annotated[int, Field(ge=1, le=1024)] = 32
    """Width of the two hidden layers of each device's Q-network (F -> H -> H -> A)."""
    discount_horizon: PositiveDuration = 3600.0
    """Time horizon of the discount: gamma per tick is ``exp(-control period / discount_horizon)``."""
    lr: Annotated[float, Field(gt=0, le=1)] = 1e-3
    """Adam's step size; IQL's rates alpha, sigma, beta scale it per sample."""
    batch: Annotated[int, Field(ge=1, le=4096)] = 32
    """t: transitions per mini-batch (per device)."""
    macro_batch: Annotated[int, Field(ge=1, le=65536)] = 128
    """TER's largest macro-batch, drawn uniformly, from which the mini-batch is taken by recency."""
    capacity: Annotated[int, Field(ge=1, le=1_000_000)] = 1024
    """Transitions kept per device (the oldest are overwritten)."""
    explore_for: PositiveDuration = 86400.0
    """Exploration epsilon falls linearly from 1 to ``epsilon_min`` over this time."""
    epsilon_min: Annotated[float, Field(ge=0, le=1)] = 0.05
    """Exploration epsilon after ``explore_for``."""
    target_every: Annotated[int, Field(ge=1)] = 100
    """Updates between copies of the Q-network into its target network."""
    ter: bool = True
    """Temporal Experience Replay; off: mini-batches drawn uniformly from the memory."""
    ier: bool = True
    """Imagined Experience Replay: one imagined transition per sampled one, from the known additive dynamics."""
    ier_next_obs: Literal["imagined", "lived"] = "imagined"
    """The next observation an imagined twin bootstraps from: the one the dynamics imagine (as the paper),
    or the one lived (the twin imagines its reward only, and bootstraps from a state devices live)."""
    iql: bool = True
    """Impact Q-Learning: per-sample rates by impact and outcome; off: every sample at rate alpha."""
    double_q: bool = False
    """Double DQN's TD target (van Hasselt et al. 2016): the online network picks the next action, the
    target network values it; off: the target network's max (both pick the action a shield forces)."""
    alpha: Rate = 0.5
    """IQL's fast rate (relative): good outcomes the device is credited for, or coordinated ones."""
    sigma: Rate = 0.1
    """IQL's middle rate: outcomes the device shares."""
    beta: Rate = 0.01
    """IQL's slow rate: outcomes the device had little part in."""
    lambda_low: Share = 0.5
    """Impact below which a device is not credited (impact 1 = a fair share of the joint control)."""
    lambda_high: Share = 1.5
    """Impact at or above which a device is credited for a good outcome."""
    idle_impact: Share = 0.0
    """Impact of a device that idled (control 0) while others acted. Its share of the joint control
    is 0, so at 0 its idle transitions, lived or imagined, are learned at beta; at 1 idling counts
    as a fair share of the decision, as when nobody acts (sigma: its Q-value of idling learns as
    fast as a shared outcome's)."""

    @model_validator(mode="after")
    def _consistent(self) -> CooperativeConfig:
        if not self.beta < self.sigma < self.alpha:
            raise ValueError(
                f"beta, sigma, alpha: IQL's rates must be ordered beta < sigma < alpha, got beta = {self.beta}, "
                f"sigma = {self.sigma}, alpha = {self.alpha}"
            )
        if self.lambda_low > self.lambda_high:
            raise ValueError(f"lambda_low: must not exceed lambda_high ({self.lambda_high}), got {self.lambda_low}")
        if self.capacity < self.batch:
            raise ValueError(f"capacity: the replay memory must hold a batch ({self.batch}), got {self.capacity}")
        if not self.batch <= self.macro_batch <= self.capacity:
            raise ValueError(
                f"macro_batch: must lie in [batch, capacity] = [{self.batch}, {self.capacity}], got {self.macro_batch}"
            )
        return self

    def gamma(self, period_s: float) -> float:
        """Discount per control tick of ``period_s`` seconds (:func:`~fleet.learners.configs.discount_per_step`)."""
        return discount_per_step(self.discount_horizon, period_s)

    def epsilon(self, t_s: float) -> float:
        """Exploration at ``t_s`` seconds after the start."""
        return max(self.epsilon_min, 1.0 - (1.0 - self.epsilon_min) * t_s / self.explore_for)

    def macro_size(self, epsilon: float) -> int:
        """TER's macro-batch at exploration ``epsilon``: ``batch`` at 1 (the mini-batch is the
        macro-batch, uniform), ``macro_batch`` at 0."""
        return self.batch + round((self.macro_batch - self.batch) * (1.0 - epsilon))


class CooperativeLearnerConfig(CooperativeConfig):
    """``cooperative-v1`` on a fleet: the core's hyperparameters and how often it learns."""

    update_every: Annotated[int, Field(ge=1, le=10_000)] = 1
    """Control ticks between updates (one mini-batch each)."""
    comfort_guard: bool = False
    """Comfort as a constraint, not a price: a device whose measured temperature lies outside its
    comfort band on the side its HVAC corrects (below in heat mode, above in cool mode) runs its top
    level, as the rule-based thermostat switches on there; inside the band the Q-network chooses
    (:func:`fleet.learners.cooperative.learner.guarded`)."""
    ier_coordination: Literal["always", "overloaded", "never"] = "always"
    """Where IER imagines every other device copying the device (its coordination twin on a feeder):
    ``always`` (the paper's test alone: the device and the others both drew power), ``overloaded``
    (only in transitions whose lived feeder load exceeded its capacity, the only ones in which the
    device's reward depended on the others' power), ``never``; elsewhere the twin is the device
    alone (:meth:`fleet.learners.cooperative.learner.FeederDynamics.coupled`)."""
