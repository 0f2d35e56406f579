"""Checkpoints: an interrupted run resumes to exactly the result of an uninterrupted one."""

import filecmp
import hashlib

import pytest
import torch
from click.testing import CliRunner

from fleet.cli import main
from fleet.errors import ConfigError, RunDirError
from fleet.learners import LearnerContext, make_learner
from fleet.results import execute, resume

SETTINGS = {
    "fleet.sites": "[{name: a, devices: 8, feeder_kw: 20, network: {wifi: 1.0}}, {name: b, devices: 8, feeder_kw: 20, network: {lte-m: 1.0}}]",
    "topology.degree": 2,
    "learner.name": "diffusion-v1",
    "horizon": "3h",
    "outputs.checkpoint_every": "1h",
    "network.churn.failures_per_day": 8,
}
LTE_M_FIT = {"diffusion-v1": {"learner.params.comm.dtype": "float16"}, "centralized-v1": {"learner.params.params_dtype": "float16"}}
"""The parameter messages in float16, which fit the LTE-M link of site b (float32 does not)."""


def interrupt_at(seconds):
    def progress(t):
        if t >= seconds:
            raise KeyboardInterrupt

    return progress


@pytest.mark.parametrize("learner", ["diffusion-v1", "centralized-v1"])
def test_interrupted_then_resumed_equals_uninterrupted(scenario_factory, tmp_path, learner):
    sc = scenario_factory(**{**SETTINGS, "learner.name": learner, **LTE_M_FIT[learner]})
    _, full = execute(sc, tmp_path / "full")
    _, part = execute(sc, tmp_path / "cut", progress=interrupt_at(2.5 * 3600))
    assert part["run"]["status"] == "interrupted" and part["run"]["simulated_s"] < sc.horizon
    _, resumed = resume(tmp_path / "cut")
    assert resumed["run"]["status"] == "completed"
    for key in ("kpis", "baseline", "comm", "consensus"):
        assert resumed[key] == full[key]
    assert filecmp.cmp(tmp_path / "full" / "metrics.csv", tmp_path / "cut" / "metrics.csv", shallow=False)


def digest(path):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def test_resume_refuses_a_checkpoint_of_another_scenario_and_changes_nothing(scenario_factory, tmp_path):
    sc = scenario_factory(**SETTINGS, **LTE_M_FIT["diffusion-v1"])
    run_dir, _ = execute(sc, tmp_path / "cut", progress=interrupt_at(1.5 * 3600))
    yaml_path = run_dir.path / "scenario.yaml"
    yaml_path.write_text(yaml_path.read_text().replace("seed: 0", "seed: 5"))
    before = digest(run_dir.path)
    with pytest.raises(ConfigError, match="another scenario"):
        resume(run_dir.path)
    result = CliRunner().invoke(main, ["resume", str(run_dir.path)])
    assert result.exit_code == 2 and "another scenario" in result.stderr and "Traceback" not in result.stderr
    assert digest(run_dir.path) == before


def test_resume_without_or_with_a_corrupt_checkpoint_is_a_clear_error(scenario_factory, tmp_path):
    sc = scenario_factory(**{**SETTINGS, **LTE_M_FIT["diffusion-v1"], "outputs.checkpoint_every": "null"})
    run_dir, _ = execute(sc, tmp_path / "cut", progress=interrupt_at(1.5 * 3600))
    with pytest.raises(RunDirError, match="no checkpoint"):
        resume(run_dir.path)
    (run_dir.path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RunDirError, match="not a readable checkpoint"):
        resume(run_dir.path)


def test_loading_learner_state_of_the_wrong_shape_names_the_shapes():
    from fleet.scenario import TopologyConfig
    from fleet.sim.topology import build_topology
    import numpy as np

    topo = build_topology(TopologyConfig(kind="ring", degree=2), [np.arange(6)], np.random.default_rng(0))
    small = make_learner("diffusion-v1", {"hidden": 8}, LearnerContext(6, 4, "heat", np.random.default_rng(0), "cpu", topo))
    big = make_learner("diffusion-v1", {"hidden": 16}, LearnerContext(6, 4, "heat", np.random.default_rng(0), "cpu", topo))
    with pytest.raises(ConfigError, match="shapes"):
        big.load_state_dict(small.state_dict())
    assert isinstance(small.state_dict()["core"]["params"][0], torch.Tensor)
