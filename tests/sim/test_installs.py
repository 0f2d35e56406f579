"""New installs mid-run: devices reset to fresh controllers, their KPIs, and what is refused."""

import csv

import numpy as np
import pytest
from click.testing import CliRunner

from fleet.cli import main
from fleet.errors import ConfigError
from fleet.results import execute
from fleet.sim.engine import Simulation
from fleet.sim.installs import Installs
from fleet.sim.split import check_split
from tests.sim.conftest import shrink

SMALL = {
    "fleet.sites": "[{name: a, devices: 8, feeder_kw: 20}, {name: b, devices: 8, feeder_kw: 20}]",
    "topology.degree": 2,
    "control_period": "15min",
    "network.churn.failures_per_day": 0,
    "workloads.telemetry.enabled": "false",
    "workloads.consensus.enabled": "false",
}


def test_a_learner_that_cannot_reset_a_device_exits_2_naming_fleet_installs_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    args = ["run", "thermostats-small-v1", "-o", str(out), "--set", "learner.name=independent-v1"]
    result = CliRunner().invoke(main, [*args, "--set", "fleet.installs=[{at: 1h, fraction: 0.1}]"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "fleet.installs: learner 'independent-v1' cannot reset" in result.stderr
    assert "planner-v1" in result.stderr and "rule-based-v1" in result.stderr
    assert not out.exists()


def test_a_split_run_refuses_installs_naming_the_field():
    sc = shrink(**{"fleet.installs": "[{at: 1h, devices: [1]}]"})
    with pytest.raises(ConfigError, match=r"fleet.installs: new installs reset devices .* --actors 1"):
        check_split(sc, 2)


def test_an_install_by_share_draws_that_many_distinct_devices_from_the_seed():
    sc = shrink(**{"fleet.installs": "[{at: 1h, fraction: 0.25}, {at: 2h, devices: [9, 2]}]"})
    draws = [Installs(sc.fleet.installs, 100, np.random.default_rng(seed)).devices for seed in (1, 1, 2)]
    first, again, other = draws
    assert len(first[0]) == 25 and len(np.unique(first[0])) == 25
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.array_equal(first[0], other[0])
    np.testing.assert_array_equal(first[1], [2, 9])


def test_installs_are_made_once_each_when_due():
    sc = shrink(**{"fleet.installs": "[{at: 1h, devices: [4, 1]}, {at: 2h, devices: [1, 7]}]"})
    installs = Installs(sc.fleet.installs, 10, np.random.default_rng(0))
    assert installs.due(3599.0).tolist() == []
    assert installs.due(3600.0).tolist() == [1, 4]
    assert installs.due(5000.0).tolist() == []
    assert installs.due(9000.0).tolist() == [1, 7]


def test_an_install_of_every_device_accounts_the_fleets_kpis(tmp_path):
    """The same devices in the same order: the install's totals are the fleet's, to the last bit."""
    sc = shrink(**{**SMALL, "horizon": "6h", "fleet.installs": "[{at: 3h, fraction: 1.0}]"})
    run, summary = execute(sc, tmp_path / "run")
    assert summary["installs"] == [{"at_s": 10800.0, "devices": 16}]
    for row in csv.DictReader((run.path / "metrics.csv").open()):
        assert row["installs/0/cost"] == row["kpi/cost"]
        assert row["installs/0/discomfort_degh"] == row["kpi/discomfort_degh"]
        assert row["installs/0/baseline_cost"] == row["baseline/cost"]


def joiners_after_install(learner: str) -> tuple[np.ndarray, object]:
    """Whether the two devices installed anew at day 1 plan after the re-plan 4 hours later (the
    run ends at 29 h), and the learner."""
    settings = {
        **SMALL,
        "learner.name": learner,
        "learner.params.identification.min_data": "6h",
        "horizon": "29h",
        "fleet.installs": "[{at: 1d, devices: [3, 12]}]",
    }
    sim = Simulation(shrink(**settings))
    sim.run()
    return sim.fleet.controller.planning[[3, 12]], sim.fleet.controller


def test_a_joiner_with_neighbours_plans_at_once_where_alone_it_waits_for_its_own_data():
    """By theory: at its re-plan 4 hours after the install a joiner has 16 samples of its own,
    fewer than the 24 of ``min_data`` (6 h), so alone it still runs the thermostat; its two
    neighbours have a day of data each, worth 12 hours at weight 0.5, so with them it plans on
    what they published from the install on."""
    alone, learner = joiners_after_install("planner-alone-v1")
    forgetting = np.exp(-900 / (14 * 86400.0))  # per tick, identification.memory of 14 days
    own = sum(forgetting**k for k in range(19))  # the ticks from 24 h to 28.75 h, each closed at the next
    np.testing.assert_allclose(learner.ident.samples()[[3, 12]], own, rtol=1e-9)  # reset at the install
    assert learner.ident.samples()[0] > 100
    assert not alone.any()
    with_neighbours, _ = joiners_after_install("planner-v1")
    assert with_neighbours.all()
