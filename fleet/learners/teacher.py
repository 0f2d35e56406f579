"""A teacher on every device: the actor learns by imitating it on the states its own policy visits.

With ``learner.params.teacher`` an actor-critic learner (``independent-v1``, ``diffusion-v1``,
``centralized-v1``) learns by imitation, not from rewards. Every control tick each device acts greedily with its
policy (the network is what is deployed) and asks its teacher which level *it* would run in the
same state; at each update the actor takes ``epochs`` steps on each device's mean cross-entropy
between its policy and the teacher's levels over the ticks of its rollout that the teacher
labelled (:meth:`fleet.learners.stacked.ActorCritic.imitate`). The states come from the
learner's own policy, the labels from the expert: DAgger (Ross, Gordon and Bagnell 2011), online,
with every mixing weight on the learner. Diffusion then combines the adapted parameters with
the neighbours' as after any local step (:mod:`fleet.learners.actor_critic`), so a device also
learns from what its neighbours' planners taught them; its messages are diffusion's. Centralized
devices upload their labels with their experience and the cloud imitates them all in one network
(:mod:`fleet.learners.centralized`).

The teacher ``planner`` (:class:`PlannerTeacher`) is the device's own planner,
``planner-alone-v1``'s code (:mod:`fleet.learners.planner`): it identifies the house by recursive
least squares from the levels the *policy* ran, re-plans by dynamic programming at the first
update at least ``replan_period`` after its last plan, and labels a state with the level its plan
chooses there. Until its estimate is trusted (``min_data`` of data, a physical model), or while
the measured temperature is off its grid, it has no advice: those ticks carry no label and teach
nothing (its fallback thermostat's level is not a lesson). So a fresh device takes no step for
its first ``min_data`` and acts with the policy it started from (``init_policy``).

Batching adds no coupling: the loss is the sum over devices of each device's loss, the gradient is
clipped per device, and the planner's arithmetic is per device (as :mod:`fleet.learners.stacked`
and :mod:`fleet.learners.planner`).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from fleet.errors import ConfigError
from fleet.learners.base import LearnerContext, Observation
from fleet.learners.planner.config import PlannerConfig
from fleet.learners.planner.learner import PlannerLearner
from fleet.statefile import attrs_state, load_attrs

NO_LABEL = -1
"""The label of a tick on which the teacher gave no advice."""
METRIC_KEYS = ("teacher/labelled", "teacher/agreement", "losses/imitation", *PlannerLearner.metric_keys)
"""What a learner with a teacher reports besides its own: the share of device-ticks labelled, the
share of those where the policy's likeliest level was the teacher's (before the update's steps), the
imitation loss, and the planner's own metrics at each re-plan."""


class PlannerTeacher:
    """Every device's own planner, identifying its house from the levels the policy runs; see the module docstring."""

    STATE: ClassVar[tuple[str, ...]] = ("planner", "ticks")

    def __init__(self, config: PlannerConfig, ctx: LearnerContext) -> None:
        try:
            self.planner = PlannerLearner(config, ctx)
        except ConfigError as e:  # it names the planner's own fields
            raise ConfigError(str(e).replace("learner.params.", "learner.params.teacher.planner.", 1)) from None
        self.lookahead_h = self.planner.lookahead_h
        """The hours ahead of the schedule and tariff that each plan needs (the engine's ``lookahead``)."""
        self.ticks = 0
        """Control ticks since the last plan (or the start)."""

    def label(self, obs: Observation, level: np.ndarray) -> np.ndarray:
        """(N,) int64: the planner's level for every device at ``obs``, :data:`NO_LABEL` where it has no
        advice; ``level`` (N,) is what each device runs (what its identification learns from)."""
        advice, planned = self.planner.advise(obs)
        self.planner.record(obs, level)
        self.ticks += 1
        return np.where(planned, advice, NO_LABEL)

    def replan(self, t: float) -> dict[str, float]:
        """Estimate every device's model and plan at ``t`` if ``replan_period`` has passed since the last
        plan; the planner's metrics if it did."""
        if self.ticks < self.planner.update_every:
            return {}
        self.ticks = 0
        return self.planner.update(t)

    def state_dict(self) -> dict:
        """:attr:`STATE`: the planner's state (:class:`PlannerLearner`) and the ticks since its last plan."""
        return attrs_state(self, self.STATE)

    def load_state_dict(self, state: dict) -> None:
        load_attrs(self, state, self.STATE)
