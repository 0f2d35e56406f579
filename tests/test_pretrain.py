"""Pretraining (fleet.pretrain, fleet train): worlds of randomized houses, DAgger from the optimum,
PPO, checkpoints, and the policy file that learners load."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from devices.building import ThermostatFleet
from fleet.errors import ConfigError, RunDirError
from fleet.learners.features import N_FEATURES
from fleet.learners.stacked import StackedMLP
from fleet.mqtt.memory import MemoryBroker
from fleet.optimum import Window, optimal_control
from fleet.pretrain import (
    CHECKPOINT,
    POLICY,
    RECORD,
    OptimumTeacher,
    TrainConfig,
    Trainer,
    _OneNetwork,
    draw_world,
    train,
)
from fleet.scenario import parse_scenario
from fleet.sim.rng import Streams
from fleet.sim.world import build_world
from fleet.statefile import load
from tests.conftest import tiny_scenario
from tests.edge.agents import diffusion_raw, memory_agent, view_of
from tests.hostile import assert_refused, fleet_cli

TINY = {"houses": 6, "days": 1, "rounds": 2, "fit_epochs": 2, "n_steps": 48}
"""A training that takes seconds: 6 houses, 1 day per round, 2 DAgger rounds (PPO: 2 updates a day)."""


@pytest.fixture(scope="module")
def scenario():
    raw = tiny_scenario()
    raw.update(control_period="15min")
    return parse_scenario(raw, "tiny", Path.cwd())


def test_a_round_draws_the_scenarios_distributions_widened_around_their_centres(scenario):
    _, world = draw_world(scenario, TrainConfig(houses=4000, widen=2.0), 0)
    p = world.params
    # resistance: uniform on [3, 6], ratio 2 around sqrt(18) -> ratio 4: [sqrt(18) / 2, sqrt(18) * 2]
    assert np.sqrt(18) / 2 <= p.resistance.min() < 2.2 and 8.4 < p.resistance.max() <= np.sqrt(18) * 2
    # internal gain [0.1, 0.5] -> [0.1 / sqrt(5), 0.5 * sqrt(5)]: wider, and still positive
    assert 0.1 / np.sqrt(5) <= p.internal_gain.min() < 0.06 and 1.1 < p.internal_gain.max() <= 0.5 * np.sqrt(5)
    # outdoor offset: normal std 0.5 clipped to +-2 -> std 1.0 clipped to +-4
    assert np.std(p.outdoor_offset) == pytest.approx(1.0, rel=0.1) and np.abs(p.outdoor_offset).max() <= 4.0
    assert world.n == 4000 and world.feeder_kw.sum() == pytest.approx(scenario.fleet.sites[0].feeder_kw * 4000 / 6 * 2)


def test_every_round_draws_other_houses_weather_and_start_day_and_the_same_again_for_the_same_seed(scenario):
    cfg = TrainConfig(houses=6, days=2)
    (a, wa), (b, wb), (a2, wa2) = (draw_world(scenario, cfg, r) for r in (0, 1, 0))
    assert a.seed != b.seed and not np.array_equal(wa.params.resistance, wb.params.resistance)
    assert a == a2 and np.array_equal(wa.params.resistance, wa2.params.resistance)
    starts = {draw_world(scenario, cfg, r)[0].start_day for r in range(8)}
    assert len(starts) > 1 and all(d <= scenario.start_day + 60 or d >= scenario.start_day - 60 + 365 for d in starts)


def test_a_distribution_widened_out_of_its_physical_range_is_refused_naming_it(scenario, tmp_path):
    with pytest.raises(ConfigError, match=r"(?s)widen=6.*fleet.building.outdoor_offset_c.*\[-12.0, 12.0\]"):
        train(scenario, tmp_path / "out", TrainConfig(**TINY, widen=6.0))
    assert not (tmp_path / "out").exists()


def test_the_optimum_teacher_names_the_optimums_levels_along_its_trajectory(scenario):
    world = build_world(scenario, Streams(3))
    times = 900.0 * np.arange(96)
    window = Window(times, np.ones(96, bool), 900.0)
    chosen: list[np.ndarray] = []
    optimal_control(world, window, 1.0, world.params.initial_temp, on_level=chosen.append)
    teacher = OptimumTeacher(1.0, "heat")
    teacher.plan(world, window)
    houses = ThermostatFleet(world.params, "heat")
    for k, t in enumerate(times):
        step = world.conditions(float(t))
        level = teacher.levels(k, step, houses.temp)
        assert np.array_equal(level, chosen[k])
        houses.step(level, step["outdoor_c"], 900.0)
    assert len({int(x) for c in chosen for x in c}) > 1  # not one level all along


@pytest.fixture(scope="module")
def trained(scenario, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "out"
    return out, train(scenario, out, TrainConfig(**TINY, rl_rounds=1))


def test_dagger_follows_the_teacher_first_then_fits_its_labels_and_ppo_follows(trained):
    out, record = trained
    first, second, third = record["rounds"]
    assert [r["method"] for r in record["rounds"]] == ["dagger", "dagger", "ppo"]
    # round 0 follows the optimum on every tick: near none of the rule-based thermostat's discomfort
    assert first["discomfort_degh"] < 0.5
    assert first["labelled"] == 6 * 96 and second["labelled"] == 2 * 6 * 96  # the data of both rounds
    assert second["agreement"] > 0.5  # the refitted actor picks the teacher's level on most of its own states
    assert np.isfinite(third["losses/policy"])
    assert {p.name for p in out.iterdir()} == {POLICY, CHECKPOINT, RECORD}


def _saved_actor(path: Path) -> list[torch.Tensor]:
    return [torch.as_tensor(t) for layer in load(path, "policy", 1 << 20)["layers"] for t in layer.values()]


def test_a_run_acts_with_the_policy_file(trained, tmp_path, write_scenario):
    raw = tiny_scenario()
    raw.update(control_period="15min", horizon="1d")
    raw["learner"] = {
        "name": "independent-v1",
        "params": {"init_policy": str(trained[0] / POLICY), "frozen": True, "evaluate": "greedy"},
    }
    done = fleet_cli("run", write_scenario(raw), "-o", tmp_path / "run", "-q")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["kpis"]["cost"] > 0


def test_an_agent_deploys_the_policy_file_and_fine_tunes_it(trained, tmp_path):
    policy = trained[0] / POLICY
    agent = memory_agent(view_of(diffusion_raw(init_policy=str(policy))), MemoryBroker(), tmp_path / "state")
    for mine, theirs in zip(agent.learner.core.actor.parameters, _saved_actor(policy), strict=True):
        assert torch.equal(mine.detach()[0], theirs)
    assert agent.run().updates > 0


def test_a_policy_for_another_action_count_is_refused_naming_the_file(trained, tmp_path, write_scenario):
    raw = tiny_scenario()
    raw["fleet"]["hvac"]["power_levels_kw"] = [0.0, 1.5, 3.0]
    raw["learner"] = {"name": "diffusion-v1", "params": {"init_policy": str(trained[0] / POLICY)}}
    done = fleet_cli("run", write_scenario(raw), "-o", tmp_path / "run", "-q")
    assert_refused(done, "learner.params.init_policy", str(trained[0] / POLICY), "n_actions")
    assert not (tmp_path / "run" / "summary.json").exists()


def test_an_interrupted_training_resumes_to_the_same_policy(scenario, trained, tmp_path):
    out = tmp_path / "out"

    def stop_in_round_2(t: float) -> None:
        if t >= 2.5 * 86400:  # the first PPO update of round 2, after round 1's checkpoint
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(scenario, out, TrainConfig(**TINY, rl_rounds=1), progress=stop_in_round_2)
    assert (out / CHECKPOINT).is_file() and not (out / POLICY).exists()
    with pytest.raises(ConfigError, match="another config"):
        train(scenario, out, TrainConfig(**{**TINY, "houses": 7}, rl_rounds=1), resume=True)
    record = train(scenario, out, TrainConfig(**TINY, rl_rounds=1), resume=True)
    assert (out / POLICY).read_bytes() == (trained[0] / POLICY).read_bytes()
    assert [r["cost"] for r in record["rounds"]] == [r["cost"] for r in trained[1]["rounds"]]


def test_a_finished_training_is_not_resumed(scenario, trained):
    with pytest.raises(RunDirError, match="finished"):
        train(scenario, trained[0], TrainConfig(**TINY, rl_rounds=1), resume=True)


def test_an_existing_folder_is_never_overwritten_without_overwrite_and_only_a_trainings_files_go(
    scenario, tiny_scenario_file, tmp_path
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ("train", tiny_scenario_file, "-o", out, "-q", "--houses", "6", "--days", "1", "--rounds", "1")
    assert_refused(fleet_cli(*args), str(out), "already exists", "--overwrite")
    assert_refused(fleet_cli(*args, "--overwrite"), "not a training folder")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    (out / "notes.txt").unlink()
    assert fleet_cli(*args).returncode == 0
    (out / "notes.txt").write_text("mine")
    before = (out / POLICY).read_bytes()
    assert_refused(fleet_cli(*args), "already exists")
    assert (out / POLICY).read_bytes() == before
    done = fleet_cli(*args, "--overwrite")
    assert done.returncode == 0, done.stderr
    assert (out / "notes.txt").read_text() == "mine" and (out / POLICY).is_file()


def test_an_unknown_teacher_exits_2_naming_it_and_writes_nothing(tiny_scenario_file, tmp_path):
    done = fleet_cli("train", tiny_scenario_file, "-o", tmp_path / "out", "--teacher", "oracle")
    assert_refused(done, "teacher", "'oracle'", "optimum")
    assert not (tmp_path / "out").exists()


def test_without_a_teacher_every_round_is_ppo_and_changes_the_actor(scenario, tmp_path):
    cfg = TrainConfig(teacher="none", houses=6, days=1, rounds=1)
    record = train(scenario, tmp_path / "out", cfg)
    assert [r["method"] for r in record["rounds"]] == ["ppo"] and np.isfinite(record["rounds"][0]["losses/value"])
    start = Trainer(scenario, cfg, "cpu").core.actor.parameters
    saved = _saved_actor(tmp_path / "out" / POLICY)
    assert all(torch.isfinite(t).all() for t in saved)
    assert not all(torch.equal(a.detach()[0], b) for a, b in zip(start, saved))


def test_the_shared_network_gives_what_the_stacked_one_gives_on_every_row():
    net = StackedMLP(1, [N_FEATURES, 8, 8, 4], torch.Generator().manual_seed(0), "cpu")
    x = torch.randn(5, 7, N_FEATURES)
    torch.testing.assert_close(_OneNetwork(net)(x), net(x), rtol=1e-5, atol=1e-6)
    assert _OneNetwork(net).parameters == net.parameters  # the very tensors: an optimizer of one steps the other


def test_a_ppo_update_on_some_houses_learns_from_their_ticks_only(scenario, tmp_path):
    cfg = TrainConfig(teacher="none", houses=6, days=1, rounds=1, ppo_houses=2, n_steps=48)
    record = train(scenario, tmp_path / "out", cfg)
    assert np.isfinite(record["rounds"][0]["losses/value"])


def test_the_commands_defaults_are_the_configs():
    from fleet.cli import train_cmd

    fields = TrainConfig.model_fields
    given = {
        p.name: p.default for p in train_cmd.params if p.name in fields and isinstance(p.default, int | float | str)
    }
    assert len(given) == 8 and given == {name: fields[name].default for name in given}  # teacher_weight: None
