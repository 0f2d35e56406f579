"""Checkpoints: an interrupted run resumes to exactly the result of an uninterrupted one."""

import filecmp
import hashlib
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.cli import main
from fleet.errors import ConfigError, FleetError, RunDirError
from fleet.learners import LearnerContext, make_learner
from fleet.results import RunDir, execute, resume
from fleet.statefile import load, save
from tests.hostile import assert_refused, fleet_cli, hostile_pickle
from tests.sim.conftest import shrink
from tests.test_statefile import header, json_values, mutated_files, with_header

SETTINGS = {
    "fleet.sites": "[{name: a, devices: 8, feeder_kw: 20, network: {wifi: 1.0}}, "
    "{name: b, devices: 8, feeder_kw: 20, network: {lte-m: 1.0}}]",
    "topology.degree": 2,
    "learner.name": "diffusion-v1",
    "horizon": "3h",
    "outputs.checkpoint_every": "1h",
    "network.churn.failures_per_day": 8,
}
LTE_M_FIT = {
    "diffusion-v1": {"learner.params.comm.dtype": "float16"},
    "centralized-v1": {"learner.params.params_dtype": "float16"},
    "planner-v1": {},
}
"""The parameter messages in float16, which fit the LTE-M link of site b (float32 does not)."""


def interrupt_at(seconds):
    def progress(t):
        if t >= seconds:
            raise KeyboardInterrupt

    return progress


@pytest.mark.parametrize(
    "learner, extra",
    [
        ("diffusion-v1", {}),
        ("centralized-v1", {}),
        ("diffusion-v1", {"fleet.hostile.devices": ["d00000"]}),  # the guard's counts go on after the resume
        # plans from the first half hour on, re-planned every half hour: the resume falls inside a plan
        (
            "planner-v1",
            {
                "learner.params.identification.min_data": "30min",
                "learner.params.replan_period": "40min",
                "learner.params.horizon": "4h",
            },
        ),
        # new installs before the checkpoint (2 h, the resume's) and after it
        (
            "planner-v1",
            {
                "learner.params.identification.min_data": "30min",
                "learner.params.replan_period": "40min",
                "learner.params.horizon": "4h",
                "fleet.installs": "[{at: 1.5h, fraction: 0.25}, {at: 2.75h, devices: [3, 9]}]",
            },
        ),
    ],
)
def test_interrupted_then_resumed_equals_uninterrupted(scenario_factory, tmp_path, learner, extra):
    sc = scenario_factory(**{**SETTINGS, "learner.name": learner, **LTE_M_FIT[learner], **extra})
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
    (run_dir.path / "checkpoint.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(
        RunDirError, match="checkpoint.safetensors: not a fleet-state file .* not a readable checkpoint"
    ):
        resume(run_dir.path)


def test_loading_learner_state_of_the_wrong_shape_names_the_shapes():
    import numpy as np

    from fleet.scenario import TopologyConfig
    from fleet.sim.topology import build_topology

    topo = build_topology(TopologyConfig(kind="ring", degree=2), [np.arange(6)], np.random.default_rng(0))
    small = make_learner(
        "diffusion-v1", {"hidden": 8}, LearnerContext(6, 4, "heat", np.random.default_rng(0), "cpu", topo)
    )
    big = make_learner(
        "diffusion-v1", {"hidden": 16}, LearnerContext(6, 4, "heat", np.random.default_rng(0), "cpu", topo)
    )
    with pytest.raises(ConfigError, match=r"core.params.0: shape \(6, 22, 8\), expected \(6, 22, 16\)"):
        big.load_state_dict(small.state_dict())
    assert isinstance(small.state_dict()["core"]["params"][0], torch.Tensor)


# --- checkpoints are data: a hostile or mismatched file is refused, naming it --------------------------------


@pytest.fixture(scope="module")
def cut_run(tmp_path_factory):
    """A diffusion run stopped at 1.5 h (checkpoint at 1 h, with messages in flight and churn)."""
    sc = shrink(**SETTINGS, **LTE_M_FIT["diffusion-v1"])
    run_dir, _ = execute(sc, tmp_path_factory.mktemp("cut") / "run", progress=interrupt_at(1.5 * 3600))
    return run_dir.path, sc


@pytest.fixture
def run_copy(cut_run, tmp_path):
    return shutil.copytree(cut_run[0], tmp_path / "run")


@pytest.mark.parametrize("name", ["checkpoint.pt", "checkpoint.safetensors"])
def test_a_checkpoint_crafted_to_run_a_command_runs_nothing_and_resume_exits_2(run_copy, tmp_path, name):
    (run_copy / "checkpoint.safetensors").unlink()
    (run_copy / name).write_bytes(hostile_pickle(tmp_path / "ran"))
    before = digest(run_copy)
    done = fleet_cli("resume", "-q", run_copy)
    assert_refused(done, str(run_copy / name))
    assert not (tmp_path / "ran").exists()
    assert digest(run_copy) == before


def rewrite(path, change):
    """Apply ``change`` to the state in the checkpoint at ``path`` and save it again."""
    state = load(path, "simulation", 1 << 30)
    change(state["simulation"])
    with path.open("wb") as f:
        save(f.write, "simulation", state)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda s: s["network"]["uplink"].update(free_at=np.zeros(3)),
            r"simulation.network.uplink.free_at: shape \(3,\), expected \(17,\)",
        ),
        (
            lambda s: s["fleet"]["controller"]["core"]["params"][2].mul_(0).resize_(5),
            r"simulation.fleet.controller.core.params.2: shape \(5,\)",
        ),
        (lambda s: s.pop("churn"), "simulation.churn: missing"),
        (lambda s: s.update(ticks="90"), "simulation.ticks: expected int, got str"),
        (
            lambda s: s["network"]["pending"]["params"][0].update(
                msg=np.full_like(s["network"]["pending"]["params"][0]["msg"], 99)
            ),
            r"simulation.network.pending.params.0.msg: indices must lie in \[0, ",
        ),
        (lambda s: s.update(time=1e9), r"simulation.time: 1000000000.0 s is not within the run's horizon"),
        (
            lambda s: s["next_due"].update(control=-1.0),
            r"simulation.next_due.control: -1.0 s is not a time after the checkpoint's \(3600.0 s\)",
        ),
    ],
)
def test_a_checkpoint_that_does_not_fit_names_the_entry_and_changes_nothing(run_copy, change, message):
    rewrite(run_copy / "checkpoint.safetensors", change)
    before = digest(run_copy)
    with pytest.raises(RunDirError, match=message):
        resume(run_copy)
    assert digest(run_copy) == before


def test_a_checkpoint_of_another_format_version_names_both_versions(run_copy):
    path = run_copy / "checkpoint.safetensors"
    table, data = header(path)
    table["__metadata__"]["version"] = "7"
    with_header(path, table, data)
    with pytest.raises(RunDirError, match="written in fleet-state version '7'; this version of fleet reads version 1"):
        resume(run_copy)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_mutated_checkpoint_is_refused_with_the_projects_errors_only(cut_run, tmp_path_factory, data):
    """Bytes flipped, cut or added anywhere, or an entry of the state replaced by other data:
    loading it into a new simulation raises FleetError or fits."""
    folder, sc = cut_run
    path = tmp_path_factory.mktemp("mutated") / "checkpoint.safetensors"
    if data.draw(st.booleans()):
        path.write_bytes(data.draw(mutated_files((folder / "checkpoint.safetensors").read_bytes())))
    else:
        shutil.copy(folder / "checkpoint.safetensors", path)
        rewrite(path, lambda s: replace_somewhere(s, data))
    try:
        RunDir(path.parent).load_checkpoint(sc)
    except FleetError:
        pass


STATE_DATA = (
    json_values(st.text(max_size=6).filter(lambda k: not k.startswith("@")))
    | st.builds(np.zeros, st.integers(0, 3))
    | st.just(np.zeros((2, 2), np.int32))
)
"""What a state may hold in place of an entry: JSON data, arrays of other shapes or dtypes."""


def replace_somewhere(tree, data) -> None:
    """Replace one entry of ``tree`` (found by walking down it) by drawn data, or delete it."""
    node = tree
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = data.draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, (dict, list)) and child and data.draw(st.booleans()):
            node = child
            continue
        if isinstance(node, dict) and data.draw(st.booleans()):
            del node[key]
        else:
            node[key] = data.draw(STATE_DATA)
        return
