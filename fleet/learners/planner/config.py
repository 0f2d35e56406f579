"""The typed config of the planner learners (:mod:`fleet.learners.planner.learner`).

Durations are durations (``24h``, ``15min``), never tick counts, so a scenario can change its
control period without retuning; what depends on the control period is checked when the
learner is built (:class:`~fleet.errors.ConfigError` naming the field).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from devices.config import RuleBasedConfig
from fleet.config import FiniteFloat, PositiveDuration, StrictModel
from fleet.learners.comm import CommConfig

STATS = 9
"""Numbers in one device's identification statistics: the 6 distinct entries of its
information matrix (3, 3) and its information vector (3,) (:mod:`.identification`)."""
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class IdentificationConfig(StrictModel):
    """How a device identifies its house: the prior, the memory, when the estimate is trusted."""

    memory: PositiveDuration = 14 * 86400.0
    """Time constant of the forgetting: data this old weighs 1/e of data now (houses change slowly;
    the weather changes what the data excites)."""
    min_data: PositiveDuration = 86400.0
    """Data the device plans on at the earliest (its own, plus what its neighbours' statistics are
    worth: ``neighbour_weight``): before that it runs the thermostat (``fallback``)."""
    noise_c: Positive = 0.15
    """Expected error of a one-tick prediction, degC (sensor noise of two readings and model
    error): how much one sample weighs against the prior."""
    sensor_noise_c: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.1
    """Standard deviation of the indoor temperature sensor's noise, degC (its datasheet's): the
    least squares are compensated for the bias it causes."""
    prior_time_constant: PositiveDuration = 30 * 3600.0
    """Prior mean of the house's time constant R*C."""
    prior_gain_c_per_kw: Positive = 12.0
    """Prior mean of the steady-state warming per kW of electrical HVAC power, R*COP, degC/kW."""
    prior_internal_c: FiniteFloat = 1.0
    """Prior mean of the steady-state warming by internal gains, R*Q_internal, degC."""
    time_constant_range: tuple[PositiveDuration, PositiveDuration] = (2 * 3600.0, 500 * 3600.0)
    """Time constants accepted as physical; an estimate outside is rejected (the device runs the thermostat)."""
    gain_range_c_per_kw: tuple[Positive, Positive] = (1.0, 100.0)
    """Steady-state warming per kW accepted as physical, degC/kW."""
    internal_range_c: tuple[FiniteFloat, FiniteFloat] = (-5.0, 20.0)
    """Steady-state warming by internal gains accepted as physical, degC."""

    @model_validator(mode="after")
    def _ordered(self) -> IdentificationConfig:
        for name in ("time_constant_range", "gain_range_c_per_kw", "internal_range_c"):
            low, high = getattr(self, name)
            if not low < high:
                raise ValueError(f"{name}: the low end {low} must be below the high end {high}")
        return self


class PlannerConfig(StrictModel):
    """Identify the house online, plan by dynamic programming, re-plan on a period."""

    smaller_messages: ClassVar[tuple[str, ...]] = ()
    via_cloud: ClassVar[bool] = False

    def message_sizes(self, n_levels: int) -> dict[str, int]:
        """Encoded bytes of the largest message of each kind: none, it identifies alone."""
        return {}

    horizon: PositiveDuration = 86400.0
    """How far ahead each plan looks; at most the weather forecast's last lead time."""
    replan_period: PositiveDuration = 7200.0
    """Time between two plans (and identification estimates); at least the control period."""
    discomfort_per_degh: Annotated[float, Field(ge=0)] = 0.3
    """Weight of a degree-hour outside the comfort band against the energy cost in the plan. Tuned
    (docs/studies/planner.md; seeds 0-4 of thermostats-small-v1 over the realistic forecast, 10 days,
    the last 5): at 0.3 with ``margin_c`` 0.1 the planner saved 0.74 +- 0.08 per device-day against
    the thermostat at 0.25 +- 0.27 degC*h, against 0.65 +- 0.08 at 0.20 degC*h at 1.0 (the scenarios'
    own price of discomfort); the thermostat with ``preheat_h: 3`` had 2.17 degC*h. On the cold climate's
    seeds 0-4 (thermostats-cold-v1, 20 days) 0.3 was also the cheapest of 0.3, 0.5 and 1.0, at 0.19 degC*h
    against the preheating thermostat's 0.78."""
    margin_c: Annotated[float, Field(ge=0, le=3)] = 0.1
    """The plan keeps the temperature this far inside the band (against sensor noise and model error).
    Tuned as ``discomfort_per_degh`` (at a weight of 1.0): 0.1 degC saved 0.65 +- 0.08 per device-day at
    0.20 degC*h, 0.2 degC 0.59 at 0.17, 0.3 degC 0.53 at 0.16: a wider margin buys little comfort dearly."""
    grid_c: tuple[FiniteFloat, FiniteFloat, Positive] = (12.0, 28.0, 0.2)
    """Temperature grid of the value function: low, high, step, degC. A device that measures a
    temperature outside it runs ``fallback`` until it is back on it (counted: ``planner/off_grid``)."""
    identification: IdentificationConfig = IdentificationConfig()
    """The identification of each house."""
    fallback: RuleBasedConfig = RuleBasedConfig(preheat_h=3)
    """The thermostat a device runs while it has no trusted model."""

    @model_validator(mode="after")
    def _grid(self) -> PlannerConfig:
        low, high, step = self.grid_c
        if not low + 2 * step <= high:
            raise ValueError(f"grid_c: needs low + 2 * step <= high, got {self.grid_c}")
        return self


class DiffusionPlannerConfig(PlannerConfig):
    """The planner whose devices also take their neighbours' identification statistics as a prior."""

    def message_sizes(self, n_levels: int) -> dict[str, int]:
        """``params``: a device's identification statistics (:data:`STATS` numbers)."""
        return {"params": self.comm.largest_message_bytes(STATS)}

    neighbour_weight: Annotated[float, Field(ge=0, le=1)] = 0.5
    """What a sample of a neighbour's house is worth against one of the device's own house."""
    neighbour_cap: PositiveDuration = 2 * 86400.0
    """The neighbours' statistics together weigh at most this much of the device's own data: a
    prior that a day or two of the device's own data outweighs (houses differ)."""
    qos: Literal[0, 1] = 0
    """MQTT QoS of the statistics messages."""
    comm: CommConfig = CommConfig()
    """When the statistics are published; float32 and whole (top-k 1): nine numbers whose information
    matrix spans six orders of magnitude."""

    @model_validator(mode="after")
    def _whole(self) -> DiffusionPlannerConfig:
        if self.comm.topk < 1 or self.comm.dtype != "float32":
            raise ValueError(
                f"comm: statistics messages are {STATS} numbers sent whole in float32 (topk: 1, dtype: float32), "
                f"got topk {self.comm.topk}, dtype {self.comm.dtype}"
            )
        return self
