"""Learner registry: versioned names -> learner classes and their typed configs.

Importing this package imports no learner (nor torch): :data:`REGISTRY` finds them through
entry points (:mod:`fleet.learners.registry`) and loads each when it is first asked for.
"""

from __future__ import annotations

from fleet.learners.base import Deliveries, Learner, LearnerContext, Observation, RegistryEntry
from fleet.learners.registry import REGISTRY


def make_learner(name: str, params: dict, ctx: LearnerContext) -> Learner:
    """Build a registered learner from its name and (already validated) parameters."""
    entry = REGISTRY.require(name)
    return entry.cls(entry.config_cls.model_validate(params), ctx)


__all__ = ["REGISTRY", "Deliveries", "Learner", "LearnerContext", "Observation", "RegistryEntry", "make_learner"]
