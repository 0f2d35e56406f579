"""What ships with the package for the learners: named parameter presets and policy files.

A **preset** is a named set of a learner's parameters (``presets.yaml`` beside this module),
selected in a scenario with ``learner.preset: NAME``; keys given in ``learner.params`` override
single ones (nested sections such as ``comm`` key by key). A **shipped policy** is an actor
file that ``learner.params.init_policy`` names instead of a path, e.g. ``clone-v1``.

In a source checkout a shipped policy is read where it was made (:data:`POLICIES`); a wheel
holds it as ``fleet/_policies/<name><suffix>`` (``pyproject.toml``'s force-include).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

PRESETS_FILE = Path(__file__).with_name("presets.yaml")
REPO = Path(__file__).resolve().parents[2]
POLICIES = {
    "clone-v1": "benchmarks/results/imitation-policy.safetensors",
    "pretrained-v1": "benchmarks/results/pretrained-policy.safetensors",
}
"""Shipped policy files by name: where each lies in the source tree. ``clone-v1`` is the actor
that imitates the perfect-information optimum (``python benchmarks/study_learning.py
imitate``; 22 features, 32 x 32 hidden, 4 HVAC levels); ``pretrained-v1`` the actor that
``fleet train`` learnt by DAgger from the optimum on randomized houses (docs/studies/pretraining.md;
same layout)."""


@cache
def presets() -> dict[str, dict[str, dict[str, Any]]]:
    """learner name -> preset name -> parameters."""
    return yaml.safe_load(PRESETS_FILE.read_text(encoding="utf-8"))


def with_preset(learner: str, preset: str, params: Any) -> Any:
    """``params`` over the preset's parameters; ValueError naming the known presets if there is none of that name."""
    known = presets().get(learner, {})
    if preset not in known:
        offer = f"known presets of {learner}: {', '.join(sorted(known))}" if known else f"{learner} has no presets"
        raise ValueError(f"preset {preset!r} is not a preset of {learner}; {offer} (fleet learners lists them)")
    return _merged(known[preset], params) if isinstance(params, dict) else params


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on ``base``, mappings merged key by key."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def policy_path(name_or_path: str) -> str:
    """The file of a shipped policy's name, or ``name_or_path`` itself when it names none."""
    if name_or_path not in POLICIES:
        return name_or_path
    source = REPO / POLICIES[name_or_path]
    packaged = Path(__file__).parents[1] / "_policies" / f"{name_or_path}{source.suffix}"
    return str(packaged if packaged.is_file() else source)
