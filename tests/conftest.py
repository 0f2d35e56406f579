"""Shared fixtures: a real shipped scenario, shrunk to a few devices and a couple of hours."""

from pathlib import Path

import pytest
import yaml

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def tiny_scenario() -> dict:
    """``thermostats-small-v1`` shrunk: 6 devices in 2 sites, 2 h of 1-min ticks, metrics every 15 min,
    all on Wi-Fi (a learner's float32 parameters do not fit an LTE-M message: a scenario with
    both is refused)."""
    raw = yaml.safe_load((SCENARIOS / "thermostats-small-v1.yaml").read_text())
    raw.update(name="thermostats-tiny", horizon="2h", control_period="1min")
    for site in raw["fleet"]["sites"]:
        site["devices"] = 3
        site["network"] = {"wifi": 1.0}
    raw["topology"]["degree"] = 2  # a small-world degree must stay below the 3 devices of a site
    raw["outputs"]["metrics_period"] = "15min"
    return raw


@pytest.fixture
def tiny_raw() -> dict:
    """The tiny scenario as a YAML mapping, to change before writing it."""
    return tiny_scenario()


@pytest.fixture
def write_scenario(tmp_path):
    """``write_scenario(raw, name)`` writes a mapping (or raw text) as a scenario file in tmp_path."""

    def write(raw: dict | str, name: str = "scenario.yaml") -> Path:
        path = tmp_path / name
        path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw, sort_keys=False))
        return path

    return write


@pytest.fixture
def tiny_scenario_file(tiny_raw, write_scenario) -> Path:
    return write_scenario(tiny_raw, "tiny.yaml")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A completed run directory of the tiny scenario; copy it before changing it."""
    from fleet.results import execute
    from fleet.scenario import load_scenario

    folder = tmp_path_factory.mktemp("tiny")
    scenario_file = folder / "tiny.yaml"
    scenario_file.write_text(yaml.safe_dump(tiny_scenario(), sort_keys=False))
    run_dir, _ = execute(load_scenario(scenario_file), folder / "run", device="cpu")
    return run_dir.path


@pytest.fixture
def mosquitto(tmp_path):
    """A real mosquitto broker on a free loopback port, anonymous access, stopped after the test."""
    from tests.mosquitto import start_broker

    broker = start_broker(tmp_path / "broker")
    yield broker
    broker.stop()
