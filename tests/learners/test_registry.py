"""Learners register through the ``fleet.learners`` entry point group, built-in and third-party alike."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.errors import ConfigError
from fleet.learners import REGISTRY
from fleet.learners.registry import Registry

BUILT_IN = ["centralized-v1", "diffusion-v1", "independent-v1", "planner-alone-v1", "planner-v1", "rule-based-v1"]

PLUGIN = """
from devices.config import RuleBasedConfig
from fleet.learners import RegistryEntry
from fleet.learners.rule_based import RuleBasedLearner


class ToyLearner(RuleBasedLearner):
    name = "toy-v1"


ENTRY = RegistryEntry(ToyLearner, RuleBasedConfig, "a rule-based thermostat under another name")
NOT_AN_ENTRY = "toy"
"""


def install(site: Path, dist: str, entry_points: dict[str, str], module: str | None = None) -> None:
    """A distribution as pip leaves it in ``site``: its dist-info with entry points, and a module."""
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = [f"{name} = {value}\n" for name, value in entry_points.items()]
    (info / "entry_points.txt").write_text("[fleet.learners]\n" + "".join(lines))
    if module is not None:
        (site / f"{dist}.py").write_text(module)


def fleet_cli(site: Path, *args: str) -> subprocess.CompletedProcess:
    """``fleet ARGS`` in a fresh interpreter that also sees the distributions in ``site``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    code = "import sys; from fleet.cli import main; main(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120)


def test_the_built_in_learners_are_entry_points_named_as_their_classes():
    assert list(REGISTRY) == BUILT_IN
    for name in BUILT_IN:
        entry = REGISTRY[name]
        assert entry.cls.name == name and entry.config_cls.model_validate({}) == entry.config_cls()


def test_a_third_party_learner_is_listed_described_and_usable_and_a_broken_one_is_named(tmp_path, tiny_scenario_file):
    points = {"toy-v1": "toyplugin:ENTRY", "broken-v1": "toyplugin_missing:ENTRY", "wrong-v1": "toyplugin:NOT_AN_ENTRY"}
    install(tmp_path, "toyplugin", points, PLUGIN)
    listing = fleet_cli(tmp_path, "learners")
    assert listing.returncode == 2, listing.stderr
    assert [line.split()[0] for line in listing.stdout.splitlines()] == sorted([*BUILT_IN, "toy-v1"])
    errors = listing.stderr.splitlines()
    assert len(errors) == 2 and "Traceback" not in listing.stderr
    assert errors[0].startswith(
        "error: learner 'broken-v1': cannot load its entry point toyplugin_missing:ENTRY of package toyplugin 0.1"
    )
    assert "ModuleNotFoundError" in errors[0]
    assert errors[1] == (
        "error: learner 'wrong-v1': its entry point toyplugin:NOT_AN_ENTRY of package toyplugin 0.1 "
        "is a str, not a fleet.learners.RegistryEntry"
    )

    described = fleet_cli(tmp_path, "learners", "toy-v1")
    assert described.returncode == 0, described.stderr
    assert described.stdout.startswith(
        "toy-v1: a rule-based thermostat under another name\nclass toyplugin:ToyLearner\n"
    )
    assert "  deadband_c: float > 0 = 0.5\n      hysteresis width" in described.stdout

    # a scenario names it, its parameters are validated against its config, and it runs
    toy = ["--set", "learner.name=toy-v1"]
    bad = fleet_cli(tmp_path, "validate", tiny_scenario_file, *toy, "--set", "learner.params.deadband_c=-1")
    assert bad.returncode == 2 and "learner.params.deadband_c" in bad.stderr
    out = tmp_path / "run"
    ran = fleet_cli(tmp_path, "run", tiny_scenario_file, *toy, "-o", out, "--device", "cpu", "-q")
    assert ran.returncode == 0, ran.stderr
    assert '"learner": "toy-v1"' in (out / "summary.json").read_text()


def test_two_packages_claiming_one_name_is_an_error_naming_both(tmp_path):
    install(tmp_path, "copycat", {"diffusion-v1": "copycat:ENTRY"})
    described = fleet_cli(tmp_path, "learners", "diffusion-v1")
    assert described.returncode == 2
    assert "learner 'diffusion-v1' is registered by several packages" in described.stderr
    assert "copycat:ENTRY of package copycat 0.1" in described.stderr
    assert "fleet.learners.registry:DIFFUSION of package fleet-sim" in described.stderr


def test_no_learner_at_all_means_a_broken_install():
    with pytest.raises(ConfigError, match="reinstall it"):
        list(Registry("fleet.no-such-group"))


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="learner 'nope' is not registered; known: " + ", ".join(BUILT_IN)):
        REGISTRY.require("nope")
