"""Learner registry: versioned names -> learner classes and their typed configs."""

from __future__ import annotations

from devices.config import RuleBasedConfig
from fleet.errors import ConfigError
from fleet.learners.base import Learner, LearnerContext, Observation, RegistryEntry
from fleet.learners.rule_based import RuleBasedLearner

REGISTRY: dict[str, RegistryEntry] = {
    RuleBasedLearner.name: RegistryEntry(RuleBasedLearner, RuleBasedConfig, "deadband on/off thermostat (non-learning baseline)"),
}


def make_learner(name: str, params: dict, ctx: LearnerContext) -> Learner:
    """Build a registered learner from its name and (already validated) parameters."""
    if name not in REGISTRY:
        raise ConfigError(f"learner {name!r} is not registered; known: {', '.join(sorted(REGISTRY))}")
    entry = REGISTRY[name]
    return entry.cls(entry.config_cls.model_validate(params), ctx)


__all__ = ["REGISTRY", "Learner", "LearnerContext", "Observation", "RegistryEntry", "make_learner"]
