"""A hostile device in simulation: d00000 of the tiny fleet, with its valid credentials, publishes
±3e38 in place of its parameters for an hour (``fleet.hostile``); its neighbours d00001 and d00002
must keep running, stay honest, and count what they rejected."""

from pathlib import Path

import numpy as np
import pytest

from fleet.errors import ConfigError
from fleet.results import execute, read_metrics
from fleet.scenario import parse_scenario
from fleet.sim.engine import Simulation
from tests.conftest import tiny_scenario

HOSTILE = 0
"""d00000; its neighbours are d00001 and d00002 (its site), the south site never hears it."""


def one_hour(raw: dict, hostile: list[str]) -> dict:
    raw.update(horizon="1h")
    raw["learner"] = {"name": "diffusion-v1", "params": {"n_steps": 8}}
    raw["fleet"]["hostile"] = {"devices": hostile}
    return raw


def run(raw: dict) -> tuple[Simulation, list[dict], list[np.ndarray]]:
    """The simulation after its run, its metrics rows, and the parameters each delivery from the
    hostile device brought (spied on the learner's inbox)."""
    sim = Simulation(parse_scenario(raw, "test", Path.cwd()))
    learner, brought = sim.fleet.controller, []
    inbox = learner.inbox

    def spy(kind, got):
        brought.extend(got.arrays_of(np.flatnonzero(got.sender == HOSTILE))[0])
        inbox(kind, got)

    learner.inbox = spy
    rows: list[dict] = []
    assert sim.run(on_row=rows.append)["run"]["status"] == "completed"
    return sim, rows, brought


def test_a_hostile_device_publishing_huge_parameters_for_an_hour_leaves_every_honest_device_running_and_honest(
    tiny_raw,
):
    honest, honest_rows, _ = run(one_hour(tiny_scenario(), []))
    attacked, rows, poison = run(one_hour(tiny_raw, ["d00000"]))

    assert len(poison) > 0 and all((np.abs(p) == np.float32(3e38)).all() for p in poison)  # through the codec, as sent
    theirs, ours = honest.fleet.controller.flat_params(), attacked.fleet.controller.flat_params()
    assert ours.isfinite().all() and ours.abs().max() <= 2 * theirs.abs().max()  # within the range of an honest run
    south = slice(3, 6)  # never hear d00000: they learn exactly as in the honest run
    assert ours[south].equal(theirs[south])
    assert rows[-1]["learner/rejected_params"] == len(poison)  # every hostile delivery, no honest one
    assert honest_rows[-1]["learner/rejected_params"] == 0
    assert rows[-1]["learner/rollbacks"] == honest_rows[-1]["learner/rollbacks"] == 0  # nothing got through to undo


def test_the_rejected_count_reaches_metrics_csv(tiny_raw, tmp_path):
    raw = one_hour(tiny_raw, ["d00000"])
    raw.update(horizon="30min")
    execute(parse_scenario(raw, "test", Path.cwd()), tmp_path / "run")
    metrics = read_metrics(tmp_path / "run" / "metrics.csv")
    assert metrics["learner/rejected_params"][0] == 0 and metrics["learner/rejected_params"][-1] > 0
    assert (metrics["learner/rollbacks"] == 0).all()


@pytest.mark.parametrize(
    "hostile, external, message",
    [
        (["d00099"], [], "fleet.hostile.devices: unknown device(s) d00099"),
        (["d00001", "d00001"], [], "fleet.hostile.devices: d00001 listed twice"),
        (["d00001"], ["d00001"], "fleet.hostile.devices: d00001 also in fleet.external"),
    ],
)
def test_hostile_devices_must_be_simulated_devices_of_the_fleet(tiny_raw, hostile, external, message):
    raw = one_hour(tiny_raw, hostile)
    raw["fleet"]["external"] = external
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_scenario(raw, "test", Path.cwd())
