"""The typed configs of the built-in learners, apart from their torch code.

Reading a scenario validates ``learner.params`` against these models (:mod:`fleet.scenario`),
and ``fleet learners NAME`` lists their fields; neither imports torch, which only the learners
themselves (:mod:`fleet.learners.stacked`, :mod:`fleet.learners.actor_critic`,
:mod:`fleet.learners.centralized`) need.
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

from pydantic import BeforeValidator, Field, model_validator

from fleet.config import FiniteFloat, PositiveDuration, StrictModel
from fleet.errors import ConfigError
from fleet.learners.base import N_FEATURES
from fleet.learners.comm import CommConfig
from fleet.learners.planner.config import PlannerConfig
from fleet.mqtt.codec import DType, encoded_size

LearningRate = Annotated[float, Field(gt=0, le=1)]
Optimizer = Literal["adam", "rmsprop", "sgd"]
Epochs = Annotated[int, Field(ge=1, le=100)]
Coefficient = Annotated[float, Field(ge=0)]


def layer_sizes(hidden: int, n_features: int, n_actions: int) -> tuple[list[int], list[int]]:
    """Layer sizes of the actor (F -> H -> H -> A logits) and of the critic (F -> H -> H -> 1)."""
    return [n_features, hidden, hidden, n_actions], [n_features, hidden, hidden, 1]


def param_count(hidden: int, n_features: int, n_actions: int) -> int:
    """P: one device's parameters, actor and critic, weights and biases (the width of
    :meth:`fleet.learners.stacked.ActorCritic.flat`)."""
    return sum(a * b + b for sizes in layer_sizes(hidden, n_features, n_actions) for a, b in zip(sizes[:-1], sizes[1:]))


class GuardConfig(StrictModel):
    """Thresholds of the checks on received and own parameters."""

    max_param: FiniteFloat = Field(1e3, gt=0)
    """Largest magnitude of any parameter: received ones beyond it (or not finite) are rejected, own ones rolled
    back."""
    max_norm_ratio: FiniteFloat = Field(10.0, gt=0)
    """Received parameters θ_j are rejected when ||θ_j|| > max_norm_ratio * ||θ_i|| (θ_i: the receiver's own)."""


def discount_per_step(horizon_s: float, period_s: float) -> float:
    """The discount per step of ``period_s`` seconds (a control tick) of every learner whose horizon
    is ``horizon_s`` (its ``discount_horizon``): ``exp(-period_s / horizon_s)``, so that what lies
    ``t`` seconds ahead counts ``exp(-t / horizon_s)`` whatever the control period. ConfigError
    naming ``learner.params.discount_horizon`` if the horizon is shorter than a step (a discount
    below 1/e per step sees hardly past the next one)."""
    if horizon_s < period_s:
        raise ConfigError(
            f"learner.params.discount_horizon ({horizon_s:g} s) is shorter than the control period "
            f"({period_s:g} s); set a horizon of at least one control period, e.g. '24h'"
        )
    return math.exp(-period_s / horizon_s)


# --- discomfort as a constraint ------------------------------------------------------------

_PER = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1.0}
"""Days per unit of time that a rate may be written per."""


def parse_per_day(value: object) -> float:
    """A rate per day from ``value``: a number (per day) or a string ``"<number>/<unit>"`` with a unit of time,
    ``s``, ``min``, ``h`` or ``d`` (``"2/d"``, ``"0.1/h"``). Never per control tick: the same rate must hold
    whatever the scenario's tick."""
    if isinstance(value, str):
        number, _, unit = value.replace(" ", "").partition("/")
        if unit not in _PER:
            raise ValueError(
                f"cannot read {value!r} as a rate: write it per unit of time, e.g. '2/d' or '0.1/h' "
                f"(units {', '.join(_PER)}; never per tick, which would change with the control period)"
            )
        try:
            return float(number) / _PER[unit]
        except ValueError:
            raise ValueError(f"cannot read {number!r} in {value!r} as a number") from None
    return value  # a number, per day (pydantic checks its type)


PerDay = Annotated[float, BeforeValidator(parse_per_day), Field(gt=0, allow_inf_nan=False)]
"""A positive rate per day: a number, or a string with its unit of time such as ``'2/d'`` or ``'0.1/h'``."""


class DiscomfortLimit(StrictModel):
    """Discomfort as a constraint, not only a price (:mod:`fleet.learners.constraint`): each device keeps
    its own Lagrange multiplier λ_i, money per degree-hour, and learns on the reward with its discomfort priced
    at the scenario's ``reward.discomfort_per_degh`` plus λ_i. λ_i rises while the device's running discomfort
    (its own measurements, averaged over ``window``) is above ``degh_per_day`` and falls back to 0 below it.

    The limit is what the reference controller reaches: run it (``fleet run SCENARIO --set
    learner.params.preheat_h=3`` for the preheating thermostat) and read ``per_device_day.discomfort_degh``
    of its ``summary.json``. To make discomfort only a constraint, set ``reward.discomfort_per_degh: 0``."""

    degh_per_day: Annotated[float, Field(gt=0)]
    """The limit: discomfort in degree C-hours per device and day that a device may reach (its running
    average). Must be above 0: a limit of 0 is a price that only rises, to ``max_multiplier``."""
    multiplier_rate: PerDay = 1.0
    """How fast λ moves: the fraction of ``max_multiplier`` per day by which it rises while the running
    discomfort is twice the limit (in proportion to the relative excess, (running - limit) / limit; it falls
    as fast while the running discomfort is 0). Per unit of time, e.g. ``2/d``, never per tick."""
    window: PositiveDuration = "1d"
    """Time over which the running discomfort averages (an exponential average of this time constant)."""
    initial_multiplier: Annotated[float, Field(ge=0)] = 0.0
    """λ at the start, money per degree-hour."""
    max_multiplier: Annotated[float, Field(gt=0, le=1e6)] = 10.0
    """The largest λ, money per degree-hour: a bound that keeps a limit that cannot be met (a house too
    cold to heat) from pricing everything else out of the reward."""

    @model_validator(mode="after")
    def _initial_at_most_max(self) -> DiscomfortLimit:
        if self.initial_multiplier > self.max_multiplier:
            raise ValueError(
                f"initial_multiplier ({self.initial_multiplier:g}) must not exceed "
                f"max_multiplier ({self.max_multiplier:g})"
            )
        return self


def _teacher_by_name(value: object) -> object:
    """``teacher: planner`` is ``teacher: {name: planner}``."""
    return {"name": value} if isinstance(value, str) else value


class TeacherConfig(StrictModel):
    """Learning from a teacher on each device instead of from rewards (:mod:`fleet.learners.teacher`): every
    device labels the states its policy visits with its teacher's level and takes imitation (DAgger) steps on
    them; the learner's ``optimizer``, ``lr`` and ``epochs`` (steps per update) set those steps."""

    name: Literal["planner"]
    """The teacher: ``planner``, the device's own planner (``planner-alone-v1``'s identification of its house
    and dynamic programme, on the levels the policy runs)."""
    planner: PlannerConfig = PlannerConfig()
    """The planner's settings (``planner-alone-v1``'s fields); its ``fallback`` thermostat only says what it
    would run without a model, which teaches nothing: no steps are taken on those states."""


class ActorCriticConfig(StrictModel):
    """Hyperparameters of the n-step advantage actor-critic (as in Diff-DAC).

    The defaults are the learning study's settings from a random start (docs/studies/learning.md:
    40 days at a 15-minute control period). Each learner's own config sets its optimizer and step.

    What the learner optimizes is set in time, how it estimates it in control ticks. The discount
    changes the objective (which policy is best), so it is a duration, ``discount_horizon``, and
    the discount per tick is derived from it and the control period (:meth:`discount`): a scenario
    can change its tick and keep its objective. ``n_steps`` and ``gae_lambda`` stay counts of
    ticks: they set the estimator (samples per gradient step, the bias and variance of the
    advantages), which any value leaves unbiased in the limit, and a step size is tuned for a
    number of samples, not for a span of time. (The update period, ``n_steps`` ticks, is also
    how often a communicating learner sends: it is reported in time where it matters.)

    A learner config also says how large the messages of its learner are, so that a scenario
    whose links cannot carry them is refused before anything runs (:func:`fleet.scenario.check_message_sizes`),
    without importing the learner: :meth:`message_sizes`, :attr:`smaller_messages`, :attr:`via_cloud`.
    """

    smaller_messages: ClassVar[tuple[str, ...]] = ()
    """Overrides of its parameters (``key=value``, as after ``learner.params.``) that make its
    messages smaller; a scenario whose links cannot carry its messages suggests those that fit."""
    via_cloud: ClassVar[bool] = False
    """Whether its messages go to or come from the cloud (the collector's link carries them)."""

    def message_sizes(self, n_levels: int) -> dict[str, int]:
        """Encoded bytes of the largest message of each kind its learner publishes, for devices
        of ``n_levels`` HVAC levels: ``{kind: bytes}``; none for a learner without messages."""
        return {}

    hidden: Annotated[int, Field(ge=1, le=1024)] = 32
    """Width of the two hidden layers of the actor and of the critic."""
    n_steps: Annotated[int, Field(ge=1, le=10_000)] = 8
    """Control ticks per update (rollout length)."""
    discount_horizon: PositiveDuration = "4.87h"
    """How far ahead the learner looks: the time over which the discount falls to 1/e. A reward
    ``t`` seconds ahead counts ``exp(-t / discount_horizon)``, so the discount per control tick is
    ``exp(-control_period / discount_horizon)`` (:meth:`discount`); the default, 0.95 per
    15-minute tick, is the learning study's. It must be at least the control period."""
    gae_lambda: Annotated[float, Field(ge=0, le=1)] = 0.95
    """GAE lambda; 1.0 gives plain n-step returns with bootstrapping."""
    lr: LearningRate = 3e-3
    """Learning rate of the optimizer (actor and critic)."""
    entropy_coef: Coefficient = 0.01
    """Weight of the entropy bonus."""
    value_coef: Annotated[float, Field(ge=0)] = 0.5
    """Weight of the critic's squared error."""
    max_grad_norm: Annotated[float, Field(gt=0)] = 1.0
    """Per-device clipping of the gradient norm."""
    normalize_advantages: bool = True
    """Standardize the advantages: a shared network (``centralized``'s cloud) over its whole batch, every
    device and step of an update, as PPO; a device's own network by the running mean and variance of its
    own advantages over its recent updates (decay ``value_norm_decay`` per update), which keeps devices
    uncoupled (:mod:`fleet.learners.stacked`)."""
    epochs: Epochs = 1
    """Gradient steps per rollout. With 1 this is A2C; with more, the later steps use PPO's
    clipped surrogate so that the policy cannot move far from the one that collected the data."""
    clip: Annotated[float, Field(gt=0, lt=1)] = 0.2
    """PPO clip range of the probability ratio (used when epochs > 1)."""
    shaping_per_degc: Annotated[float, Field(ge=0)] = 0.6
    """Thermostat learners only (:func:`fleet.learners.features.shape_rewards`; the core takes
    rewards as given). Potential-based reward shaping (Ng, Harada and Russell 1999): the learner adds
    ``gamma * phi(next) - phi(now)`` (gamma: the discount per tick) with ``phi = shaping_per_degc * indoor
    temperature`` to each
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
    optimizer: Optimizer = "adam"
    """Per-device optimizer. ``sgd`` (with ``momentum``) is linear in the gradient, so a
    diffusion combine averages the neighbours' gradient steps as Diff-DAC assumes. Adam divides
    each device's step by that device's own gradient scale: on one house's 8-16 noisy samples
    the steps are mostly noise of full size, and averaging them cancels the policy's learning
    signal (measured: the diffusion policy stayed uniform for 20 days). Adam suits one network
    trained on many devices' data (``centralized``). ``rmsprop`` is Diff-DAC's reference optimizer
    (alpha 0.99, eps 1e-5, as its code; preset ``diff-dac``); like Adam it scales each device's
    steps by that device's own gradients."""
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    """Heavy-ball momentum with ``optimizer: sgd``."""
    init_policy: str | None = None
    """A policy file (one device's actor) that every device's actor starts from instead of the
    seed's draw; the critic still starts from the draw. A path relative to the working
    directory, or the name of a policy shipped with fleet: ``clone-v1``, the actor that imitates
    the perfect-information optimum (``python benchmarks/study_learning.py imitate`` writes it,
    :mod:`fleet.imitation`), or ``pretrained-v1``, the actor ``fleet train`` learnt on randomized
    houses (:mod:`fleet.pretrain`; both in :mod:`fleet.learners.shipped`). A board given the same
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
    critic_warmup: PositiveDuration | None = None
    """Fine-tuning from a trained actor (``init_policy``) with a fresh critic: the updates before this time
    on the run's clock train the critic alone (the actor's loss, policy and entropy terms, weighs 0, so its
    gradient and its optimizer's steps are exactly 0), and every actor keeps the policy it started from until
    the critic has learned that policy's values; the actor's steps then start from advantages that are not
    the noise of an untrained critic. None: the actor learns from the first update."""
    anchor_coef: Coefficient = 0.0
    """Weight of a trust region around the policy every actor starts from (its ``init_policy``, or the seed's
    draw): the actor's loss adds ``anchor_coef`` times KL(π_0 || π), the divergence of the current policy π from
    the starting one π_0, averaged over the rollout's states (cross-entropy to π_0's action probabilities, as
    behaviour cloning, less π_0's entropy). Fine-tuning from a trained actor: the policy gradient may then move
    it only where its advantages outweigh the pull back. 0: none."""
    temperature: Annotated[float, Field(gt=0, le=1)] = 1.0
    """The policy the devices sample from while they learn, and whose log-probabilities the actor's loss takes:
    the softmax of the actor's logits divided by this. Below 1 it is sharper: its most probable action, the one
    a greedy device takes (``evaluate: greedy``), is the same, and it is drawn more often, so the policy gradient
    improves a policy close to the greedy one that is evaluated rather than a policy that explores at random
    (fine-tuning a trained actor). 1: the plain softmax."""
    evaluate: Literal["sample", "greedy"] = "sample"
    """How a policy that no longer learns acts (``frozen``, or after ``learn_until``): ``sample``
    its actions from its softmax, as while learning, or ``greedy``: take its most probable
    action, with no exploration left."""
    value_norm_decay: Annotated[float, Field(gt=0, lt=1)] = 0.99
    """Decay per update of the running mean and variance of each device's returns (the critic
    predicts returns in these normalized units, so it can follow values of any scale) and of its
    advantages (``normalize_advantages``)."""
    guard: GuardConfig = GuardConfig()
    """Checks on received parameters and on each device's own after every update (:mod:`fleet.learners.guard`)."""
    discomfort_limit: DiscomfortLimit | None = None
    """Discomfort as a constraint (a per-device Lagrange multiplier on top of the scenario's price): the
    device's running discomfort kept at or below ``degh_per_day``, e.g. ``{degh_per_day: 1.8}``; also
    ``multiplier_rate`` (per day, default ``1/d``), ``window`` (``1d``), ``initial_multiplier`` (0) and
    ``max_multiplier`` (10 per degree C-hour) (:class:`DiscomfortLimit`, docs/learners.md). None (the
    default): only the price."""

    teacher: Annotated[TeacherConfig | None, BeforeValidator(_teacher_by_name)] = None
    """Imitation of a teacher on each device instead of reinforcement (:class:`TeacherConfig`), e.g.
    ``teacher: planner``: every device acts greedily with its policy, and its updates fit the actor to
    its teacher's levels on the states it visited (the critic is not trained); ``centralized-v1``'s cloud
    fits the shared actor to the labels its devices upload. None (the default): the actor-critic's own steps."""

    def discount(self, period_s: float) -> float:
        """The discount per step of ``period_s`` seconds: :func:`discount_per_step`."""
        return discount_per_step(self.discount_horizon, period_s)


class DiffusionConfig(ActorCriticConfig):
    """Diff-DAC: adapt locally, then combine the adapted parameters with the neighbours' adapted
    parameters of the same round, as received (:mod:`fleet.learners.actor_critic`)."""

    smaller_messages: ClassVar[tuple[str, ...]] = ("comm.dtype=float16", "comm.dtype=int8")
    """Top-k is not among them: it does not make the largest message smaller (every device's first message is dense)."""

    def message_sizes(self, n_levels: int) -> dict[str, int]:
        """``params``: every device's P parameters (actor and critic) under the communication policy."""
        return {"params": self.comm.largest_message_bytes(param_count(self.hidden, N_FEATURES, n_levels))}

    optimizer: Optimizer = "sgd"
    """Per-device SGD, whose steps average under the combine (see ``ActorCriticConfig.optimizer``)."""
    lr: LearningRate = 0.06
    """The study's step from a random start; from a trained policy (``init_policy``) 0.006 keeps
    it (preset ``clone-finetune``). The study ran 0.3 and 0.03 when a device's own step entered
    its combine weighted by its self-weight, 1/5 on its degree-4 graph; in Diff-DAC's order
    (:mod:`fleet.learners.actor_critic`) the full step does, so a fifth is the same step."""

    weights: Literal["uniform", "metropolis"] = "uniform"
    """Combination weights over the closed neighbourhood (renormalized over fresh neighbours)."""
    staleness: PositiveDuration | None = None
    """Neighbour parameters published longer ago than this are left out; by default two update
    periods (a neighbour's newest message is one update period old when it is combined)."""
    robust: Literal["none", "clip", "trimmed-mean", "median"] | None = None
    """Robust combine against faulty or hostile neighbours. None (unset): ``none`` in a simulated
    fleet, which is honest unless a study makes a device hostile, and ``clip`` on a board
    (:data:`fleet.edge.agent.BOARD_ROBUST`), which faces a real network."""
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

    smaller_messages: ClassVar[tuple[str, ...]] = (
        "params_dtype=float16",
        "params_dtype=int8",
        "experience_dtype=float16",
    )
    via_cloud: ClassVar[bool] = True

    def message_sizes(self, n_levels: int) -> dict[str, int]:
        """``experience``: a device's rollout of ``n_steps`` transitions (observations (T+1, F),
        actions (T,), rewards (T,), the log-probabilities of the actions under the policy that took
        them (T,), or with a ``teacher`` its labels (T,)); ``params``: the cloud's P parameters."""
        t, p = self.n_steps, param_count(self.hidden, N_FEATURES, n_levels)
        shapes = [(t + 1, N_FEATURES), (t,), (t,), (t,)]
        return {
            "experience": encoded_size(self.experience_dtypes(), shapes),
            "params": encoded_size(DType[self.params_dtype.upper()], [(p,)]),
        }

    def experience_dtypes(self) -> list[DType]:
        """How an experience message's arrays go on the wire: observations, rewards and log-probabilities in
        ``experience_dtype``; actions, and a teacher's labels in place of the log-probabilities, in float16
        (small integers, exact)."""
        values = DType[self.experience_dtype.upper()]
        return [values, DType.FLOAT16, values, values if self.teacher is None else DType.FLOAT16]

    epochs: Epochs = 4
    """PPO epochs on each batch of every device's rollouts (one network, much data)."""
    entropy_coef: Coefficient = 0.003
    """A smaller entropy bonus than the per-device learners'."""

    broadcast_every: Annotated[int, Field(ge=1)] = 1
    """Cloud updates between two broadcasts of the policy."""
    experience_dtype: Literal["float32", "float16"] = "float16"
    """Encoding of uploaded observations, rewards and log-probabilities."""
    params_dtype: Literal["float32", "float16", "int8"] = "float32"
    """Encoding of the broadcast policy."""
    qos: Literal[0, 1] = 1
    """MQTT QoS of experience and policy messages."""
