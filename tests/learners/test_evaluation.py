"""Train, then test: ``learn_until`` ends learning at a time, ``evaluate`` says how the policy acts then."""

import csv

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fleet.cli import main
from fleet.errors import ConfigError
from fleet.learners import Deliveries, make_learner
from fleet.learners.features import features
from fleet.testing import TICK_S, _context, _observation, _run

LEARNERS = ["independent-v1", "diffusion-v1", "centralized-v1"]
UPDATE_S = 16 * TICK_S
"""Seconds between updates in ``_run``: n_steps of 16 ticks."""


@pytest.mark.parametrize("name", LEARNERS)
def test_learning_ends_at_learn_until_and_the_policy_then_holds(name):
    stopping = make_learner(name, {"n_steps": 16, "learn_until": 2 * UPDATE_S}, _context(5, 0))
    learning = make_learner(name, {"n_steps": 16}, _context(5, 0))
    _run(stopping, 5, 16, seed=3)
    _run(learning, 5, 16, seed=3)
    first = learning.core.flat().clone()
    _run(stopping, 5, 16, seed=4, start=16)  # the update at learn_until is the last...
    _run(learning, 5, 16, seed=4, start=16)
    assert not stopping.learning and learning.learning
    # ...of the devices' own (independent, diffusion); a centralized fleet keeps the broadcast it had
    assert torch.equal(stopping.core.flat(), first if name == "centralized-v1" else learning.core.flat())
    held = stopping.core.flat().clone()
    _run(stopping, 5, 48, seed=5, start=32)
    _run(learning, 5, 48, seed=5, start=32)
    assert torch.equal(stopping.core.flat(), held) and not torch.equal(learning.core.flat(), held)
    assert not stopping._obs and not stopping._rewards  # nothing recorded after the end
    if stopping.communicates:
        assert stopping.outbox(np.ones(5, bool)) == []


def test_a_stopped_centralized_fleet_keeps_its_policy_when_a_broadcast_arrives():
    learner = make_learner("centralized-v1", {"learn_until": UPDATE_S}, _context(4, 0))
    _run(learner, 4, 16, seed=1)
    held = learner.core.flat().clone()
    other = torch.randn(1, held.shape[1]).numpy()
    cloud = np.full(4, 4)  # the cloud endpoint sends to every device
    learner.inbox("params", Deliveries(np.arange(4), cloud, np.full(4, 1e9), np.zeros(4, np.int64), [other]))
    assert torch.equal(learner.core.flat(), held)
    started = make_learner("centralized-v1", {}, _context(4, 0))
    started.inbox("params", Deliveries(np.arange(4), cloud, np.full(4, 1e9), np.zeros(4, np.int64), [other]))
    assert torch.equal(started.core.flat(), torch.as_tensor(other).expand(4, -1))  # (one still learning takes it)


def test_greedy_takes_each_devices_most_probable_action_without_a_draw():
    learner = make_learner("independent-v1", {"frozen": True, "evaluate": "greedy"}, _context(200, 0))
    sampling = make_learner("independent-v1", {"frozen": True}, _context(200, 0))
    with torch.no_grad():  # a policy with clear preferences (the initial one is near uniform)
        for mine, theirs in zip(learner.core.actor.parameters, sampling.core.actor.parameters):
            mine.normal_(0, 1, generator=torch.Generator().manual_seed(mine.numel()))
            theirs.copy_(mine)
    obs = _observation(200, 7, np.random.default_rng(0))
    expected = learner.core.log_policy(features(obs, "cpu").unsqueeze(1)).squeeze(1).argmax(-1).numpy()
    state = learner.gen.get_state()
    assert np.array_equal(learner.act(obs), expected) and np.array_equal(learner.act(obs), expected)
    assert torch.equal(learner.gen.get_state(), state)  # no random draw
    samples = np.stack([sampling.act(obs) for _ in range(20)])
    assert (samples != expected).any()  # sampling the same policy does not


def test_the_end_of_learning_survives_a_checkpoint():
    learner = make_learner("diffusion-v1", {"learn_until": UPDATE_S}, _context(4, 0))
    _run(learner, 4, 16, seed=0)
    fresh = make_learner("diffusion-v1", {"learn_until": UPDATE_S}, _context(4, 0))
    fresh.load_state_dict(learner.state_dict())
    assert not fresh.learning


def test_learn_until_and_frozen_together_are_a_clear_error():
    with pytest.raises(ConfigError, match="learn_until"):
        make_learner("independent-v1", {"frozen": True, "learn_until": "1d"}, _context(3, 0))


def test_a_run_stops_training_and_learner_traffic_at_learn_until(tiny_scenario_file, tmp_path):
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
            "learner.params.n_steps=8",
            "--set",
            "learner.params.learn_until=1h",
            "--set",
            "learner.params.evaluate=greedy",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    trained = [r for r in rows if 0 < float(r["time_s"]) <= 3600]
    tested = [r for r in rows if float(r["time_s"]) > 3600]
    assert trained and tested
    assert all(np.isfinite(float(r["losses/policy"])) for r in trained)
    assert all(np.isnan(float(r["losses/policy"])) for r in tested)
    sent = [float(r["net/bytes_sent"]) for r in rows]
    per_period = np.diff(sent)
    # while learning, 6 devices send 2 kB parameter messages every 8 min; afterwards only telemetry and status
    assert per_period[len(trained) - 1] > 10 * per_period[-2]


def test_a_bad_evaluate_or_learn_until_names_the_field(tiny_scenario_file, tmp_path):
    for setting, field in (
        ("learner.params.evaluate=best", "evaluate"),
        ("learner.params.learn_until=-1h", "learn_until"),
    ):
        result = CliRunner().invoke(
            main,
            [
                "run",
                str(tiny_scenario_file),
                "-o",
                str(tmp_path / field),
                "-q",
                "--set",
                "learner.name=independent-v1",
                "--set",
                setting,
            ],
        )
        assert result.exit_code == 2 and field in result.output and "Traceback" not in result.output
