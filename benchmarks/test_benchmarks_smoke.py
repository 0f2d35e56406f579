"""Smoke checks of the benchmark code (no timing): run with ``pytest benchmarks -m benchmark``."""

from __future__ import annotations

import cProfile
import pstats

import pytest

from bench_engine import SCENARIO, city_overrides, parser, phase_breakdown
from fleet.scenario import load_scenario
from fleet.sim.engine import Simulation
from naive_engine import NaiveSimulation

pytestmark = pytest.mark.benchmark


@pytest.fixture
def tiny_city():
    """city-10k-v1 shrunk to 20 devices on two feeders for one hour, without the rule-based twin."""
    overrides = city_overrides(devices=20, hours=1.0, baseline=False, site_size=10) + ["outputs.sample_devices=2"]
    return load_scenario(SCENARIO, overrides)


def test_naive_engine_does_the_engines_work(tiny_city):
    engine = Simulation(tiny_city).run()
    naive = NaiveSimulation(tiny_city).run()
    # 20 devices x 60 ticks; every device publishes telemetry 12 times and consensus 4 times
    assert naive.device_steps == engine["perf"]["control_ticks"] * 20 == 1200
    assert naive.messages_sent == engine["comm"]["messages_sent"] == 20 * (12 + 4)
    # each telemetry message reaches the collector, each consensus message every neighbour,
    # less the 0.1 % Wi-Fi loss on each hop: the two differ by a few lost messages at most
    assert naive.messages_delivered == pytest.approx(engine["comm"]["messages_delivered"], rel=0.03)
    assert naive.messages_delivered + naive.messages_dropped == pytest.approx(
        engine["comm"]["messages_delivered"] + engine["comm"]["messages_dropped"], rel=0.01
    )


def test_profile_breakdown_accounts_for_the_whole_run(tiny_city):
    sim = Simulation(tiny_city)
    profiler = cProfile.Profile()
    profiler.runcall(sim.run)
    phases = phase_breakdown(pstats.Stats(profiler))
    assert phases["functions_not_found"] == [], "the engine changed: update the phases in bench_engine.py"
    assert sum(row["seconds"] for row in phases["table"]) == pytest.approx(phases["profiled_run_s"])
    assert all(row["seconds"] >= -1e-3 for row in phases["table"])


def test_every_benchmark_has_help(capsys):
    for name in ("city10k", "scaling", "naive"):
        with pytest.raises(SystemExit) as done:
            parser().parse_args([name, "--help"])
        assert done.value.code == 0
        assert "usage" in capsys.readouterr().out
