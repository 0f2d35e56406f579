"""Learner registry: versioned names -> learner classes and their typed configs."""

from __future__ import annotations

from devices.config import RuleBasedConfig
from fleet.errors import ConfigError
from fleet.learners.base import Deliveries, Learner, LearnerContext, Observation, RegistryEntry
from fleet.learners.actor_critic import DiffusionConfig, DiffusionLearner, IndependentLearner
from fleet.learners.centralized import CentralizedConfig, CentralizedLearner
from fleet.learners.rule_based import RuleBasedLearner
from fleet.learners.stacked import ActorCriticConfig

REGISTRY: dict[str, RegistryEntry] = {
    RuleBasedLearner.name: RegistryEntry(RuleBasedLearner, RuleBasedConfig, "deadband on/off thermostat (non-learning baseline)"),
    IndependentLearner.name: RegistryEntry(IndependentLearner, ActorCriticConfig, "per-device n-step actor-critic, no messages"),
    CentralizedLearner.name: RegistryEntry(CentralizedLearner, CentralizedConfig, "experience up to one cloud learner, shared policy broadcast back"),
    DiffusionLearner.name: RegistryEntry(DiffusionLearner, DiffusionConfig, "diffusion actor-critic (Diff-DAC): adapt, then combine with neighbours' received parameters"),
}


def make_learner(name: str, params: dict, ctx: LearnerContext) -> Learner:
    """Build a registered learner from its name and (already validated) parameters."""
    if name not in REGISTRY:
        raise ConfigError(f"learner {name!r} is not registered; known: {', '.join(sorted(REGISTRY))}")
    entry = REGISTRY[name]
    return entry.cls(entry.config_cls.model_validate(params), ctx)


__all__ = ["REGISTRY", "Deliveries", "Learner", "LearnerContext", "Observation", "RegistryEntry", "make_learner"]
