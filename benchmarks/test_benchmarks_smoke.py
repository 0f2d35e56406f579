"""Smoke checks of the benchmark code (no timing): run with ``pytest benchmarks -m benchmark``."""

from __future__ import annotations

import cProfile
import pstats

import pytest
from bench_engine import (
    READ_PART,
    SCENARIO,
    city_overrides,
    learner_methods,
    learner_overrides,
    learner_vs_physics,
    parser,
    phase_breakdown,
    planner_parts,
)
from naive_engine import NaiveSimulation

from fleet.scenario import load_scenario
from fleet.sim.engine import Simulation

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


def test_the_planners_breakdown_counts_its_plans_and_acts_apart_from_the_physics():
    """A planner day (as ``city10k --learner planner-v1`` runs it) on 20 devices for 4 hours: it plans once, at 2 h
    (``min_data`` 1 h) and follows the plan; the breakdown puts that time in the learner's phases."""
    overrides = city_overrides(devices=20, hours=4.0, baseline=False, site_size=10) + learner_overrides("planner-v1")
    sim = Simulation(load_scenario(SCENARIO, overrides))
    profiler = cProfile.Profile()
    profiler.runcall(sim.run)
    phases = phase_breakdown(pstats.Stats(profiler), learner_methods(type(sim.fleet.controller)))
    seconds = {row["phase"]: row["seconds"] for row in phases["table"]}
    assert phases["functions_not_found"] == [] and sum(seconds.values()) == pytest.approx(phases["profiled_run_s"])
    assert sim.fleet.controller.plans == 1 and sim.fleet.controller.planning.any()
    assert seconds["learning: learner update"] > 0 and seconds["control: physics (the houses' RC step)"] > 0
    assert seconds["control: learner act"] > 0 and seconds["control: learner's lookahead (schedule, tariff)"] > 0
    share = learner_vs_physics(phases)
    assert share["physics_x5_percent"] == pytest.approx(5 * share["physics_percent"])


def test_the_planners_parts_add_up_to_its_phases_and_scale_a_plan_to_a_day():
    """4 hours of 15-minute ticks hold 16 ticks and one plan; a day of re-planning every 2 hours holds 96 ticks and
    12 plans, so a plan's part weighs (12 / 1) / (96 / 16) = 2 times more against the physics in a day than in the
    run, and a tick's part the same."""
    overrides = city_overrides(devices=20, hours=4.0, baseline=False, site_size=10) + learner_overrides("planner-v1")
    sim = Simulation(load_scenario(SCENARIO, overrides))
    profiler = cProfile.Profile()
    profiler.runcall(sim.run)
    stats, methods = pstats.Stats(profiler), learner_methods(type(sim.fleet.controller))
    parts = planner_parts(stats, methods, 900.0, 7200.0)
    assert (parts["ticks"], parts["plans"]) == (16, 1)
    seconds = {row["phase"]: row["seconds"] for row in phase_breakdown(stats, methods)["table"]}
    learner = sum(seconds[k] for k in ("control: learner act", "learning: learner update"))
    learner += seconds["control: learner's lookahead (schedule, tariff)"]
    messages = next(row["seconds"] for row in parts["table"] if row["part"].startswith("messages"))
    assert sum(row["seconds"] for row in parts["table"]) - messages == pytest.approx(learner)
    for row in parts["table"]:
        assert row["seconds"] >= -1e-3
        assert row["x_physics_run"] == pytest.approx(row["seconds"] / parts["physics_s"])
        assert row["x_physics_day"] == pytest.approx((2.0 if row["per"] == "plan" else 1.0) * row["x_physics_run"])
    programme = next(row for row in parts["table"] if row["part"].startswith("programme"))
    assert programme["per"] == "plan" and programme["seconds"] > 0 and parts["physics_s"] > 0
    read = next(row for row in parts["table"] if row["part"] == READ_PART)  # the plan read the lookahead once
    assert read["per"] == "plan" and read["seconds"] > 0
    follow = next(row for row in parts["table"] if row["part"].startswith("acting: follow"))  # from 2 h on
    assert follow["per"] == "tick" and follow["seconds"] > 0


def test_every_benchmark_has_help(capsys):
    for name in ("city10k", "scaling", "naive", "programme"):
        with pytest.raises(SystemExit) as done:
            parser().parse_args([name, "--help"])
        assert done.value.code == 0
        assert "usage" in capsys.readouterr().out


@pytest.mark.mqtt
def test_mqtt_load_loses_nothing_at_qos1(tmp_path):
    from bench_mqtt_load import LoadConfig, run_load

    from tests.mosquitto import MOSQUITTO

    if MOSQUITTO is None:
        pytest.skip("needs the mosquitto broker: apt-get install mosquitto")
    figures = run_load(LoadConfig(agents=10, procs=2, duration=3.0, drain=2.0), tmp_path)
    published, delivered = figures["published"], figures["delivered"]
    # 10 agents x 2 msgs/s x 3 s, one params message in four, each to its 4 ring neighbours
    assert published["messages"] == sum(published["by_kind"].values()) == pytest.approx(60, abs=10)
    assert published["by_kind"]["params"] == pytest.approx(published["messages"] / 4, abs=10)
    assert delivered["expected"] == delivered["messages"] == 4 * published["messages"]
    assert delivered["lost"] == delivered["duplicates"] == delivered["corrupt"] == delivered["seq_beyond_sent"] == 0
    assert delivered["pairs"] == 40 and delivered["unexpected_pairs"] == 0
    assert figures["publish"]["puback_codes"] == {"0": published["messages"]}  # every topic has subscribers
    assert figures["delay_ms"]["all"]["count"] == delivered["messages"]
    assert figures["zero_loss"]


def test_mqtt_load_has_help(capsys):
    from bench_mqtt_load import parser as load_parser

    with pytest.raises(SystemExit) as done:
        load_parser().parse_args(["--help"])
    assert done.value.code == 0
    assert "--agents" in capsys.readouterr().out


def test_the_gpu_benchmark_measures_the_batched_update_where_it_is_told(tmp_path):
    import json

    import torch
    from bench_learners import main

    main(["--out-dir", str(tmp_path), "gpu", "--device", "cpu", "--sizes", "50,100", "--repeats", "1"])
    got = json.loads((tmp_path / "learners-gpu.json").read_text())
    assert [row["devices"] for row in got["table"]] == [50, 100]
    assert all(row["batched_samples_per_s"] > 0 and 0 < row["fraction_of_matmul"] for row in got["table"])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as stopped:
            main(["--out-dir", str(tmp_path / "none"), "gpu"])
        assert stopped.value.code == 2 and not (tmp_path / "none").exists()


def test_diffdac_acrobot_records_every_learners_curves_and_figures(tmp_path):
    import json

    from diffdac_acrobot import LEARNERS, main

    png = tmp_path / "acrobot.png"
    main(
        ["--seeds", "2", "--steps", "520", "--agents", "3", "--points", "2", "--out", str(tmp_path), "--png", str(png)]
    )
    got = json.loads((tmp_path / "diffdac-acrobot.json").read_text())
    assert list(got["curves"]) == list(LEARNERS) and got["params"]["optimizer"] == "rmsprop"
    for by_seed in got["curves"].values():
        assert list(by_seed) == ["0", "1"]
        for curve in by_seed.values():  # every agent's first episode ends by the 500-step limit
            assert [row["step"] for row in curve] == [260, 520] and curve[-1]["episodes"] >= 3
    for figure in got["figures"].values():
        assert all(-500 <= v <= 0 for values in figure["per_seed"].values() for v in values)  # -1 per step
        for ci in [*figure["mean_ci95"].values(), *figure["diffusion-v1_minus"].values()]:
            assert ci["low"] <= ci["mean"] <= ci["high"] and ci["n"] == 2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_diffdac_acrobot_weighs_each_curve_row_by_its_episodes(capsys):
    from diffdac_acrobot import _episode_mean, main

    rows = [{"episodes": 2, "mean_return": -10.0}, {"episodes": 0, "mean_return": float("nan")}]
    assert _episode_mean([*rows, {"episodes": 1, "mean_return": -40.0}]) == -20.0  # (2 * -10 - 40) / 3
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0 and "--seeds" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        main(["--agents", "2"])
    assert done.value.code == 2 and "--agents at least 3 (a ring)" in capsys.readouterr().err


def test_the_feeder_table_recomputes_the_reward_at_the_scenarios_weights_and_pairs_by_seed():
    from feeder_table import per_seed, row

    def summary(cost, discomfort, overload):
        kpis = {"cost": cost, "discomfort_degh": discomfort, "feeder_overload_kwh": overload, "peak_kw": 1.0}
        return {"kpis": kpis, "comm_per_device_day": {"bytes_sent": 0.0, "bytes_received": 0.0}}

    a = per_seed({5: summary(10, 100, 2), 6: summary(20, 300, 4)})
    b = per_seed({5: summary(10, 50, 0), 6: summary(10, 50, 0), 7: summary(0, 0, 0)})
    assert a["reward"] == {5: -(10 + 100 + 5 * 2), 6: -(20 + 300 + 5 * 4)}  # -120, -340
    # A - B on seeds 5 and 6: rewards -120 - -60 = -60 and -340 - -60 = -280, mean -170; cost 0 and 10, mean 5
    cells = row("a - b", a, b).split(" | ")
    assert cells[3].startswith("5 ± ") and cells[5].startswith("-170 ± ")
