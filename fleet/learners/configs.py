"""The typed configs of the built-in learners, apart from their torch code.

Reading a scenario validates ``learner.params`` against these models (:mod:`fleet.scenario`),
and ``fleet learners NAME`` lists their fields; neither imports torch, which only the learners
themselves (:mod:`fleet.learners.stacked`, :mod:`fleet.learners.actor_critic`,
:mod:`fleet.learners.centralized`) need.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from fleet.config import FiniteFloat, PositiveDuration, StrictModel
from fleet.learners.comm import CommConfig


class GuardConfig(StrictModel):
    """Thresholds of the checks on received and own parameters."""

    max_param: FiniteFloat = Field(1e3, gt=0)
    """Largest magnitude of any parameter: received ones beyond it (or not finite) are rejected, own ones rolled back."""
    max_norm_ratio: FiniteFloat = Field(10.0, gt=0)
    """Received parameters θ_j are rejected when ||θ_j|| > max_norm_ratio * ||θ_i|| (θ_i: the receiver's own)."""


class ActorCriticConfig(StrictModel):
    """Hyperparameters of the n-step advantage actor-critic (as in Diff-DAC)."""

    hidden: Annotated[int, Field(ge=1, le=1024)] = 32
    """Width of the two hidden layers of the actor and of the critic."""
    n_steps: Annotated[int, Field(ge=1, le=10_000)] = 16
    """Control ticks per update (rollout length)."""
    gamma: Annotated[float, Field(gt=0, lt=1)] = 0.98
    """Discount factor per control tick."""
    gae_lambda: Annotated[float, Field(ge=0, le=1)] = 0.95
    """GAE lambda; 1.0 gives plain n-step returns with bootstrapping."""
    lr: Annotated[float, Field(gt=0, le=1)] = 3e-3
    """Learning rate of the optimizer (actor and critic)."""
    entropy_coef: Annotated[float, Field(ge=0)] = 0.01
    """Weight of the entropy bonus."""
    value_coef: Annotated[float, Field(ge=0)] = 0.5
    """Weight of the critic's squared error."""
    max_grad_norm: Annotated[float, Field(gt=0)] = 1.0
    """Per-device clipping of the gradient norm."""
    normalize_advantages: bool = True
    """Standardize each device's advantages over its own rollout."""
    epochs: Annotated[int, Field(ge=1, le=100)] = 1
    """Gradient steps per rollout. With 1 this is A2C; with more, the later steps use PPO's
    clipped surrogate so that the policy cannot move far from the one that collected the data."""
    clip: Annotated[float, Field(gt=0, lt=1)] = 0.2
    """PPO clip range of the probability ratio (used when epochs > 1)."""
    shaping_per_degc: Annotated[float, Field(ge=0)] = 0.0
    """Thermostat learners only (:func:`fleet.learners.features.shape_rewards`; the core takes
    rewards as given). Potential-based reward shaping (Ng, Harada and Russell 1999): the learner adds
    ``gamma * phi(next) - phi(now)`` with ``phi = shaping_per_degc * indoor temperature`` to each
    reward, crediting heat when it is stored rather than hours later when it prevents
    discomfort. Any potential leaves the optimal policy unchanged; it changes what is learnable
    from few samples. In money per degree C; 0 turns it off."""
    shaping_kwh_per_degc: Annotated[float, Field(ge=0)] = 0.0
    """Thermostat learners only, as ``shaping_per_degc``. Shaping priced by the tariff: adds
    ``shaping_kwh_per_degc * price now`` to the potential's
    money per degree C. One kWh of electricity warms a house by COP / C degrees; with this near
    C / COP (1-4 kWh per degree C for the scenario's houses, 2.3 on average) heat is credited at
    the price paid for it when it is bought, so heating costs nothing until the heat is lost,
    and the stored heat is revalued whenever the price changes: heat carried into the 17:00 peak
    gains value, heat carried from the evening into the cheap night loses it. 0 turns it off."""
    common_init: bool = True
    """Start every device from the same parameters: those a single device draws from the
    scenario's seed, so that boards (N = 1) and simulated devices agree on them without
    talking. Diffusion needs it: averaging independently initialized networks cancels their
    features and leaves a uniform policy."""
    optimizer: Literal["adam", "sgd"] = "adam"
    """Per-device optimizer. ``sgd`` (with ``momentum``) is linear in the gradient, so a
    diffusion combine averages the neighbours' gradient steps as Diff-DAC assumes. Adam divides
    each device's step by that device's own gradient scale: on one house's 8-16 noisy samples
    the steps are mostly noise of full size, and averaging them cancels the policy's learning
    signal (measured: the diffusion policy stayed uniform for 20 days). Adam suits one network
    trained on many devices' data (``centralized``)."""
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    """Heavy-ball momentum with ``optimizer: sgd``."""
    init_policy: str | None = None
    """A file of actor parameters (one device's) that every device's actor starts from instead
    of the seed's draw; the critic still starts from the draw. ``python
    benchmarks/study_learning.py imitate`` writes one that imitates the perfect-information
    optimum (:mod:`fleet.imitation`). Relative to the working directory; a board given the same
    file starts where the simulated devices do."""
    frozen: bool = False
    """Never update: every device acts with the policy it starts from (``init_policy``, or the
    seed's draw) for the whole run and records no experience, to evaluate that policy on a
    scenario. ``independent-v1`` only: a frozen policy has nothing to exchange."""
    learn_until: PositiveDuration | None = None
    """Train, then test: the update at or after this time on the run's clock (simulated time
    from the start; a board's agent clock) is the last. From then on every device acts with the
    policy it has, records no experience, and sends and takes no learner messages (a centralized
    fleet keeps the policy each device last received). So the rest of the run evaluates the
    learned policies on the same houses and days as a baseline's run. None: learn to the end."""
    evaluate: Literal["sample", "greedy"] = "sample"
    """How a policy that no longer learns acts (``frozen``, or after ``learn_until``): ``sample``
    its actions from its softmax, as while learning, or ``greedy``: take its most probable
    action, with no exploration left."""
    value_norm_decay: Annotated[float, Field(gt=0, lt=1)] = 0.99
    """Decay per update of the running mean and variance of each device's returns; the critic
    predicts returns in these normalized units, so it can follow values of any scale."""
    guard: GuardConfig = GuardConfig()
    """Checks on received parameters and on each device's own after every update (:mod:`fleet.learners.guard`)."""


class DiffusionConfig(ActorCriticConfig):
    """Diff-DAC: adapt locally, then combine with the neighbours' received parameters."""

    weights: Literal["uniform", "metropolis"] = "uniform"
    """Combination weights over the closed neighbourhood (renormalized over fresh neighbours)."""
    staleness: PositiveDuration | None = None
    """Neighbour parameters published longer ago than this are left out; by default two update
    periods (a neighbour's newest message is one update period old when it is combined)."""
    robust: Literal["none", "clip", "trimmed-mean", "median"] = "none"
    """Robust combine against faulty or hostile neighbours."""
    clip_norm: Annotated[float, Field(gt=0)] = 5.0
    """With robust=clip: largest allowed distance of a neighbour's parameters from one's own."""
    trim: Annotated[int, Field(ge=1)] = 1
    """With robust=trimmed-mean: values dropped at each end, per coordinate."""
    qos: Literal[0, 1] = 0
    """MQTT QoS of parameter messages."""
    comm: CommConfig = CommConfig()
    """Communication policy: publish period, quantization, top-k, event trigger."""


class CentralizedConfig(ActorCriticConfig):
    """One shared policy trained in the cloud from the devices' uploaded experience."""

    broadcast_every: Annotated[int, Field(ge=1)] = 1
    """Cloud updates between two broadcasts of the policy."""
    experience_dtype: Literal["float32", "float16"] = "float16"
    """Encoding of uploaded observations and rewards."""
    params_dtype: Literal["float32", "float16", "int8"] = "float32"
    """Encoding of the broadcast policy."""
    qos: Literal[0, 1] = 1
    """MQTT QoS of experience and policy messages."""
