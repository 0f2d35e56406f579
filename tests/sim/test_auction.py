"""auction-v1 in a simulated fleet: it runs, resumes bit-identically, and refuses bad settings by name."""

import filecmp

import pytest
from click.testing import CliRunner

from fleet.cli import main
from fleet.results import execute, resume
from tests.sim.conftest import shrink

SETTINGS = {
    "fleet.sites": "[{name: a, devices: 6, feeder_kw: 15, network: {wifi: 1.0}}]",
    "topology.degree": 2,
    "learner.name": "auction-v1",
    "learner.params.n_steps": 30,
    "horizon": "3h",
    "outputs.checkpoint_every": "1h",
}


def interrupt_at(seconds):
    def progress(t):
        if t >= seconds:
            raise KeyboardInterrupt

    return progress


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
    sc = shrink(**SETTINGS)
    _, full = execute(sc, tmp_path / "full")
    _, part = execute(sc, tmp_path / "cut", progress=interrupt_at(2.5 * 3600))
    assert part["run"]["status"] == "interrupted"
    _, resumed = resume(tmp_path / "cut")
    assert resumed["kpis"] == full["kpis"] and resumed["comm"] == full["comm"]
    assert filecmp.cmp(tmp_path / "full" / "metrics.csv", tmp_path / "cut" / "metrics.csv", shallow=False)


@pytest.mark.parametrize(
    "setting, field",
    [
        ("learner.params.redundancy=0", "learner.params.redundancy"),
        ("learner.params.mechanism=dutch", "learner.params.mechanism"),
        ("learner.params.discount_horizon=30s", "learner.params.discount_horizon"),  # the control period is 1 min
    ],
)
def test_bad_settings_exit_2_naming_the_field_and_write_nothing(tmp_path, setting, field):
    out = tmp_path / "run"
    args = ["run", "thermostats-small-v1", "-o", out, "--set", "learner.name=auction-v1", "--set", setting]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 2 and field in result.stderr and "Traceback" not in result.output
    assert not out.exists()
