"""Cloning the optimum into an actor, and learners that start from a policy file."""

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fleet.cli import main
from fleet.errors import ConfigError
from fleet.imitation import agreement, clone, demonstrations, save_policy
from fleet.learners import make_learner
from fleet.learners.features import LAYOUT, N_FEATURES
from fleet.learners.stacked import ActorCriticConfig, policy_state
from fleet.scenario import parse_scenario
from fleet.statefile import load, save
from fleet.testing import N_LEVELS, _context
from tests.conftest import tiny_scenario
from tests.hostile import assert_refused, fleet_cli, hostile_torch_file


@pytest.fixture(scope="module")
def demos():
    raw = tiny_scenario()
    raw.update(horizon="2d", control_period="15min")
    return demonstrations(parse_scenario(raw, "test", Path.cwd()), 2, 1.0, quiet=True)


def test_demonstrations_are_features_and_levels_of_every_house_at_every_tick(demos):
    x, y = demos
    assert x.shape == (2 * 96 * 6, N_FEATURES) and y.shape == (2 * 96 * 6,)
    assert set(y.tolist()) <= set(range(4)) and len(set(y.tolist())) > 1  # the optimum does not do one thing


def test_the_clone_predicts_the_optimum_better_than_its_commonest_level(demos):
    x, y = demos
    actor = clone(x, y, ActorCriticConfig(), 4, seed=0, epochs=40, quiet=True)
    commonest = torch.bincount(y).max().item() / len(y)
    assert agreement(actor, x, y) > commonest + 0.1


@pytest.fixture
def policy_file(tmp_path) -> Path:
    actor = clone(
        torch.randn(64, N_FEATURES),
        torch.randint(0, N_LEVELS, (64,)),
        ActorCriticConfig(),
        N_LEVELS,
        seed=1,
        epochs=2,
        quiet=True,
    )
    path = tmp_path / "policy.safetensors"
    save_policy(path, actor)
    return path


@pytest.mark.parametrize("name", ["independent-v1", "diffusion-v1", "centralized-v1"])
def test_every_device_starts_from_the_policy_file(name, policy_file):
    saved = [t for layer in load(policy_file, "policy", 1 << 20)["layers"] for t in (layer["weight"], layer["bias"])]
    learner = make_learner(name, {"init_policy": str(policy_file)}, _context(5, 0))
    for mine, theirs in zip(learner.core.actor.parameters, saved, strict=True):
        assert torch.equal(mine.detach(), theirs.expand_as(mine))
    assert not torch.equal(
        learner.core.actor.parameters[0].detach(),
        make_learner(name, {}, _context(5, 0)).core.actor.parameters[0].detach(),
    )


def test_a_policy_file_is_never_overwritten(policy_file):
    before = policy_file.read_bytes()
    with pytest.raises(ConfigError, match="exists"):
        save_policy(policy_file, [torch.zeros(1, 2, 2)])
    assert policy_file.read_bytes() == before


def test_a_missing_or_misfit_policy_file_is_a_clear_error(tmp_path, tiny_scenario_file):
    with pytest.raises(ConfigError, match="init_policy: .*none.safetensors: cannot read it"):
        make_learner("independent-v1", {"init_policy": str(tmp_path / "none.safetensors")}, _context(3, 0))
    wrong = tmp_path / "wrong.safetensors"
    save_policy(
        wrong,
        clone(
            torch.randn(8, N_FEATURES),
            torch.zeros(8, dtype=torch.long),
            ActorCriticConfig(hidden=8),
            N_LEVELS,
            0,
            1,
            quiet=True,
        ),
    )
    with pytest.raises(ConfigError, match=r"wrong.safetensors: layers.0.weight: shape \(22, 8\), expected \(22, 32\)"):
        make_learner("centralized-v1", {"init_policy": str(wrong)}, _context(3, 0))
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(tiny_scenario_file),
            "-o",
            str(out),
            "-q",
            "--set",
            "learner.name=diffusion-v1",
            "--set",
            f"learner.params.init_policy={wrong}",
        ],
    )
    assert result.exit_code == 2 and "init_policy" in result.output and "Traceback" not in result.output
    assert not (out / "summary.json").exists()


def test_a_frozen_learner_acts_with_the_policy_file_and_never_changes_it(policy_file):
    from fleet.testing import _run

    learner = make_learner("independent-v1", {"init_policy": str(policy_file), "frozen": True}, _context(5, 0))
    learning = make_learner("independent-v1", {"init_policy": str(policy_file)}, _context(5, 0))
    start = learner.core.flat().clone()
    _run(learner, 5, 48, seed=3)  # 3 update periods
    _run(learning, 5, 48, seed=3)
    assert torch.equal(learner.core.flat(), start) and not torch.equal(learning.core.flat(), start)
    assert learner.updates == 0 and not learner._obs and not learner._rewards  # nothing is recorded


@pytest.mark.parametrize("name", ["diffusion-v1", "centralized-v1"])
def test_only_the_independent_learner_can_be_frozen(name):
    with pytest.raises(ConfigError, match="learner.params.frozen"):
        make_learner(name, {"frozen": True}, _context(3, 0))


def _policy_of_other_network(path: Path, **changes) -> None:
    """A well-formed policy file whose entries ``changes`` replace those of a fitting one."""
    actor = clone(
        torch.randn(8, N_FEATURES), torch.zeros(8, dtype=torch.long), ActorCriticConfig(), N_LEVELS, 0, 1, quiet=True
    )
    with path.open("wb") as f:
        save(f.write, "policy", {**policy_state(actor, LAYOUT), **changes})


@pytest.mark.parametrize(
    "bad, message",
    [
        ("hostile", "not a fleet-state file"),
        ("garbage", "not a fleet-state file"),
        ("actions", "n_actions: a policy choosing among 3 HVAC levels; this scenario has 4"),
        ("layout", "layout: a policy observing 'thermostat-features-v0'"),
    ],
)
def test_a_hostile_garbage_or_misfit_policy_file_exits_2_naming_it_and_runs_nothing(
    tmp_path, tiny_raw, write_scenario, bad, message
):
    policy = tmp_path / "policy.safetensors"
    if bad == "hostile":
        policy.write_bytes(hostile_torch_file(tmp_path / "ran"))
    elif bad == "garbage":
        policy.write_bytes(b"\x00" * 7 + b"policy?")
    else:
        _policy_of_other_network(
            policy, **({"n_actions": 3} if bad == "actions" else {"layout": "thermostat-features-v0"})
        )
    tiny_raw["learner"] = {"name": "diffusion-v1", "params": {"init_policy": str(policy)}}
    scenario = write_scenario(tiny_raw)
    run = fleet_cli("run", scenario, "-o", tmp_path / "run", "-q")
    agent = fleet_cli(
        "agent",
        "--scenario",
        scenario,
        "--device",
        "d00000",
        "--broker",
        "mqtt://127.0.0.1:1",
        "--state-dir",
        tmp_path / "state",
        "--duration",
        "10min",
        "-q",
    )
    for done in (run, agent):
        assert_refused(done, "learner.params.init_policy", str(policy), message)
    assert not (tmp_path / "ran").exists() and not (tmp_path / "run" / "summary.json").exists()
