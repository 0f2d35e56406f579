"""Fixtures for engine tests: shrunk copies of a shipped scenario."""

from pathlib import Path

import pytest

from fleet.scenario import apply_overrides, parse_scenario, read_yaml, resolve_scenario_path


def shrink(name: str = "thermostats-small-v1", **overrides):
    """The shipped scenario ``name`` with ``--set``-style overrides (``a.b=value``)."""
    path = resolve_scenario_path(name)
    raw = apply_overrides(read_yaml(path), [f"{k}={v}" for k, v in overrides.items()])
    return parse_scenario(raw, str(path), Path(path).parent)


@pytest.fixture
def scenario_factory():
    return shrink
