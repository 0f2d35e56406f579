"""A provisioned tiny fleet (6 devices in 2 sites, diffusion learner), shared by the deploy tests."""

import json
from pathlib import Path

import pytest

from fleet.deploy import provision
from fleet.scenario import parse_scenario
from tests.conftest import tiny_scenario
from tests.mosquitto import free_port


def tiny(learner: str = "diffusion-v1"):
    """The tiny scenario with ``learner``: diffusion reads its neighbours' params, centralized the cloud's."""
    raw = tiny_scenario()
    raw["learner"] = {"name": learner}
    return parse_scenario(raw, "tiny", Path.cwd())


@pytest.fixture(scope="package")
def kit(tmp_path_factory) -> Path:
    """``fleet deploy provision`` output of the tiny scenario, with free loopback ports; read only."""
    out = tmp_path_factory.mktemp("kit") / "fleet"
    tls_port, password_port = free_port(), free_port()
    while password_port == tls_port:
        password_port = free_port()
    provision(tiny(), out, tls_port=tls_port, password_port=password_port)
    return out


@pytest.fixture(scope="package")
def manifest(kit) -> dict:
    return json.loads((kit / "manifest.json").read_text())
