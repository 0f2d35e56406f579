"""Reports: communication versus reward over seeds, with t-intervals worked out by hand."""

import copy
import csv
import json
import math
import shutil

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from fleet.cli import main
from fleet.errors import ConfigError, RunDirError
from fleet.report import (
    capacity_groups,
    has_learning_curve,
    interval_claim,
    interval_rates,
    plot_learning,
    point_style,
)
from fleet.results import load_run
from fleet.scenario import load_scenario
from fleet.tradeoff import comm_vs_reward, estimate, final_reward, t_critical, unlabelled

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
T_975_2DF = 4.302652729911275  # t(0.975, 2), from a table
T_975_1DF = 12.706204736174705


def fleet(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- Student t ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "df, expected",
    [
        (1, T_975_1DF),
        (2, T_975_2DF),
        (3, 3.182446305284263),
        (4, 2.7764451051977987),
        (10, 2.2281388519649385),
        (30, 2.0422724563012373),
        (100, 1.9839715184496334),
    ],
)
def test_t_critical_values_match_the_table(df, expected):
    assert t_critical(df) == pytest.approx(expected, rel=1e-9)


def test_t_critical_at_other_levels_and_large_df():
    assert t_critical(1, 0.99) == pytest.approx(63.65674116287399, rel=1e-9)
    assert t_critical(5, 0.90) == pytest.approx(2.015048372669157, rel=1e-9)
    assert t_critical(2000) == pytest.approx(1.96, abs=2e-3)  # tends to the normal's 1.95996


def test_an_estimate_of_one_value_has_no_interval():
    assert estimate([3.0]).mean == 3.0 and estimate([3.0]).ci95_half_width is None
    two = estimate([1.0, 3.0])  # s = sqrt(2), n = 2
    assert two.mean == 2.0 and two.ci95_half_width == pytest.approx(T_975_1DF * math.sqrt(2) / math.sqrt(2))


# --- hand-made runs --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_scenario(tiny_run):
    """The resolved scenario of the tiny run (6 devices, 2 h), with reward weights 2 and 0.5."""
    raw = yaml.safe_load((tiny_run / "scenario.yaml").read_text())
    raw["reward"] = {"discomfort_per_degh": 2.0, "overload_per_kwh": 0.5}
    return raw


def hand_run(base, seed, delta, bytes_sent, status="completed", **changes):
    """(path, scenario, metrics, summary) of a run whose cumulative cost, discomfort and overload
    grow by ``delta`` over its second hour, and whose devices sent ``bytes_sent`` bytes. Its
    metrics row at 59 min holds the 1-min control ticks up to 59 min: the first hour."""
    scenario = copy.deepcopy(base)
    scenario["seed"] = seed
    for key, value in changes.items():
        node = scenario
        *parents, last = key.split(".")
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[last] = value
    first_hour = np.array([5.0, 3.0, 1.0])  # cumulative values at 1 h, subtracted away
    metrics = {"time_s": np.array([0.0, 3540.0, 7200.0])}
    for i, key in enumerate(("cost", "discomfort_degh", "feeder_overload_kwh")):
        metrics[f"kpi/{key}"] = np.array([0.0, first_hour[i], first_hour[i] + delta[i]])
    summary = {
        "run": {"status": status, "simulated_s": 7200.0, "horizon_s": 7200.0, "n_devices": 6},
        "comm": {"bytes_sent": float(bytes_sent)},
    }
    return (f"runs/{scenario['learner']['name']}-{seed}", scenario, metrics, summary)


def test_final_reward_per_device_per_day_over_the_tail(base_scenario):
    _, scenario, metrics, _ = hand_run(base_scenario, 0, (1.5, 0.25, 1.0), 0)
    # last half = the second hour (1/24 day), 6 devices: -(1.5 + 2 * 0.25 + 0.5 * 1.0) / 6 * 24
    assert final_reward(scenario, metrics, 6, tail=0.5) == pytest.approx(-10.0)
    # the whole run: -((5 + 1.5) + 2 * (3 + 0.25) + 0.5 * (1 + 1)) / 6 * 12
    assert final_reward(scenario, metrics, 6, tail=1.0) == pytest.approx(-28.0)
    # the last quarter starts at 1.5 h, between rows: the window starts at the row before (59 min)
    assert final_reward(scenario, metrics, 6, tail=0.25) == pytest.approx(-10.0)


def test_a_point_is_the_mean_and_t_interval_of_its_seeds(base_scenario):
    diffusion = {"learner": {"name": "diffusion-v1", "params": {}}}
    spelt_out = {"learner": {"name": "diffusion-v1", "params": {"comm": {"dtype": "float32"}}}}  # the default
    runs = [
        hand_run(base_scenario, 0, (1.0, 0.5, 0.0), 1000, **diffusion),  # reward -4 * 2.0 = -8
        hand_run(base_scenario, 1, (1.5, 0.25, 1.0), 1100, **spelt_out),  # -4 * 2.5 = -10
        hand_run(base_scenario, 2, (0.5, 1.0, 2.0), 1200, **diffusion),  # -4 * 3.5 = -14
        hand_run(base_scenario, 0, (1.0, 1.0, 0.0), 50),  # the tiny scenario's rule-based thermostat
    ]
    learned, rule = comm_vs_reward(runs)
    assert learned.label == "diffusion-v1" and rule.label == "rule-based-v1"
    assert [r.seed for r in learned.runs] == [0, 1, 2]
    # rewards -8, -10, -14: mean -32/3, s^2 = ((8/3)^2 + (2/3)^2 + (10/3)^2) / 2 = 28/3
    assert learned.reward_per_device_per_day.mean == pytest.approx(-32 / 3)
    assert learned.reward_per_device_per_day.ci95_half_width == pytest.approx(
        T_975_2DF * math.sqrt(28 / 3) / math.sqrt(3)
    )
    # bytes per device per day = bytes / 6 devices / (2 h / 24 h) = 2 * bytes: 2000, 2200, 2400 (s = 200)
    assert learned.bytes_sent_per_device_per_day.mean == pytest.approx(2200)
    assert learned.bytes_sent_per_device_per_day.ci95_half_width == pytest.approx(T_975_2DF * 200 / math.sqrt(3))
    assert rule.reward_per_device_per_day.mean == pytest.approx(-4 * 3.0)
    assert (
        rule.reward_per_device_per_day.ci95_half_width is None
        and rule.bytes_sent_per_device_per_day.mean == pytest.approx(100)
    )


def test_runs_are_grouped_by_everything_but_the_seed_and_labelled_by_what_differs(base_scenario):
    base_scenario["fleet"]["sites"][0]["network"] = {
        "wifi": 0.8,
        "lte-m": 0.2,
    }  # sites that differ in their network mix
    diffusion = {"learner.name": "diffusion-v1", "learner.params": {}}
    int8 = {"learner.name": "diffusion-v1", "learner.params": {"comm": {"dtype": "int8"}}}
    nbiot = {**diffusion, "fleet.sites.0.network": {"nb-iot": 1.0}, "fleet.sites.1.network": {"nb-iot": 1.0}}
    runs = [
        hand_run(base_scenario, 0, (1, 0, 0), 10, **diffusion),
        hand_run(base_scenario, 0, (1, 0, 0), 10, **int8),
        hand_run(
            base_scenario,
            1,
            (2, 0, 0),
            20,
            **diffusion,
            description="what is recorded does not matter",
            **{"outputs.metrics_period": 600.0, "outputs.tensorboard": True},
        ),
        hand_run(base_scenario, 0, (1, 0, 0), 10, **nbiot),
        hand_run(base_scenario, 1, (3, 0, 0), 30, **int8),
        hand_run(base_scenario, 0, (1, 0, 0), 10, **{"learner.name": "rule-based-v1"}),
    ]
    points = comm_vs_reward(runs)
    # a label leaves out the usual value of each field: the network of 3 points of 4, and the
    # dtype of 2 diffusion points of 3; what it leaves out goes to the legend's title
    assert [(p.label, [r.seed for r in p.runs]) for p in points] == [
        ("diffusion-v1", [0, 1]),
        ("diffusion-v1, comm.dtype=int8", [0, 1]),
        ("diffusion-v1, network=nb-iot", [0]),
        ("rule-based-v1", [0]),
    ]
    assert unlabelled(points) == (
        "fleet.sites[0].network=wifi 0.8+lte-m 0.2, fleet.sites[1].network=wifi; diffusion-v1: comm.dtype=float32"
    )
    assert points[1].fields == {
        "learner.name": "diffusion-v1",
        "learner.params.comm.dtype": "int8",
        "fleet.sites[0].network": {"wifi": 0.8, "lte-m": 0.2},
        "fleet.sites[1].network": {"wifi": 1.0},
    }
    assert points[1].reward_per_device_per_day.mean == pytest.approx(-4 * 2)


def test_the_same_seed_twice_is_refused(base_scenario):
    runs = [hand_run(base_scenario, 3, (1, 0, 0), 10), hand_run(base_scenario, 3, (2, 0, 0), 10)]
    with pytest.raises(ConfigError, match="same scenario with the same seed \\(3\\).*leave one of them out"):
        comm_vs_reward(runs)


def test_an_interrupted_run_is_refused(base_scenario):
    runs = [hand_run(base_scenario, 0, (1, 0, 0), 10, status="interrupted")]
    with pytest.raises(RunDirError, match="interrupted at 2 h of 2 h; finish it with fleet resume"):
        comm_vs_reward(runs)


def test_the_final_reward_is_the_sum_of_the_rewards_the_learner_gets(tiny_scenario_file):
    """The KPI-based reward equals what the learner is trained on, overload penalty included."""
    from fleet.sim.engine import Simulation

    sc = load_scenario(
        tiny_scenario_file,
        [
            "learner.name=diffusion-v1",
            "fleet.sites[0].feeder_kw=3",
            "horizon=1h",
            "outputs.baseline=false",
            "reward.discomfort_per_degh=3",
            "reward.overload_per_kwh=2",
        ],
    )
    sim = Simulation(sc, device="cpu")
    got = []
    observe = sim.fleet.controller.observe
    sim.fleet.controller.observe = lambda reward: (got.append(float(np.sum(reward, dtype=np.float64))), observe(reward))
    rows = []
    summary = sim.run(on_row=rows.append)
    assert summary["kpis"]["feeder_overload_kwh"] > 0 and summary["kpis"]["discomfort_degh"] > 0
    metrics = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    days = sc.horizon / 86400
    assert final_reward(
        sc.model_dump(mode="json"), metrics, sc.n_devices, tail=1.0
    ) * sc.n_devices * days == pytest.approx(sum(got), rel=1e-9)


# --- fleet report --comm-vs-reward -----------------------------------------------------------


def variant(tiny_run, dst, seed, factor):
    """A copy of the tiny run as if run with ``seed``: its costs and bytes scaled by ``factor``."""
    shutil.copytree(tiny_run, dst)
    scenario = yaml.safe_load((dst / "scenario.yaml").read_text())
    scenario["seed"] = seed
    (dst / "scenario.yaml").write_text(yaml.safe_dump(scenario, sort_keys=False))
    summary = json.loads((dst / "summary.json").read_text())
    summary["comm"]["bytes_sent"] *= factor
    (dst / "summary.json").write_text(json.dumps(summary))
    with (dst / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in ("kpi/cost", "kpi/discomfort_degh"):
            row[key] = repr(float(row[key]) * factor)
    with (dst / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return dst


def test_the_points_of_the_comm_vs_reward_plot_differ_in_colour_or_marker():
    """Ten colours and ten markers: the 11th point (every learner family on one plot) is not drawn
    as the 1st, nor any of the first 100 as another."""
    styles = [point_style(i) for i in range(100)]
    assert len(set(styles)) == 100
    assert point_style(10) != point_style(0) and point_style(10)[0] == point_style(0)[0]


def test_report_comm_vs_reward_writes_the_plot_and_its_numbers(tiny_run, tmp_path):
    runs = [variant(tiny_run, tmp_path / f"seed{s}", s, f) for s, f in ((0, 1.0), (1, 1.2), (2, 0.8))]
    out = tmp_path / "study"
    result = fleet("report", *runs, "--comm-vs-reward", "--tail", "0.25", "--no-per-run", "-o", out)
    assert result.exit_code == 0, result.output
    names = ["compare.png", "comm_vs_reward.png", "comm_vs_reward.csv", "comm_vs_reward.json"]
    assert result.stdout.split() == [str(out / n) for n in names] and sorted(p.name for p in out.iterdir()) == sorted(
        names
    )
    assert (out / "comm_vs_reward.png").read_bytes().startswith(PNG_MAGIC)

    values = []
    for run in runs:
        scenario, metrics, summary = load_run(run)
        values.append((final_reward(scenario, metrics, 6, tail=0.25), summary["comm"]["bytes_sent"] / 6 * 12))
    reward, sent = np.array(values).T
    with (out / "comm_vs_reward.csv").open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["label"] == "rule-based-v1" and row["n_seeds"] == "3" and row["seeds"] == "0 1 2"
    assert float(row["reward_per_device_per_day"]) == pytest.approx(reward.mean())
    assert float(row["reward_ci95_half_width"]) == pytest.approx(T_975_2DF * reward.std(ddof=1) / math.sqrt(3))
    assert float(row["bytes_sent_per_device_per_day"]) == pytest.approx(sent.mean())
    assert float(row["bytes_sent_ci95_half_width"]) == pytest.approx(T_975_2DF * sent.std(ddof=1) / math.sqrt(3))

    doc = json.loads((out / "comm_vs_reward.json").read_text())
    assert doc["tail"] == 0.25 and doc["confidence"] == 0.95
    (point,) = doc["points"]
    assert [r["reward_per_device_per_day"] for r in point["runs"]] == pytest.approx(reward.tolist())


def test_report_refuses_to_overwrite_and_writes_nothing(tiny_run, tmp_path):
    runs = [variant(tiny_run, tmp_path / f"seed{s}", s, 1.0 + s / 10) for s in (0, 1)]
    out = tmp_path / "study"
    out.mkdir()
    (out / "comm_vs_reward.csv").write_text("my own numbers")
    before = snapshot(out)
    result = fleet("report", *runs, "--comm-vs-reward", "--no-per-run", "-o", out)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert (
        result.stderr.startswith("error: ")
        and "comm_vs_reward.csv already exists; nothing was written" in result.stderr
    )
    assert "--overwrite" in result.stderr and snapshot(out) == before

    assert fleet("report", *runs, "--comm-vs-reward", "--no-per-run", "-o", out, "--overwrite").exit_code == 0
    assert (out / "comm_vs_reward.csv").read_text().startswith("label,")


def test_report_of_one_run_refuses_to_overwrite_its_earlier_report(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    assert fleet("report", run).exit_code == 0
    before = snapshot(run / "report")
    result = fleet("report", run)
    assert (
        result.exit_code == 2 and "temperatures.png, feeders.png, kpis.png, network.png already exist" in result.stderr
    )
    assert snapshot(run / "report") == before


def test_report_never_writes_through_a_dangling_link(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    (run / "report").mkdir()
    (run / "report" / "feeders.png").symlink_to(tmp_path / "planted.png")
    result = fleet("report", run)
    assert result.exit_code == 2 and "feeders.png already exists; nothing was written" in result.stderr
    assert not (tmp_path / "planted.png").exists() and [p.name for p in (run / "report").iterdir()] == ["feeders.png"]


def test_report_overwrite_replaces_a_link_and_leaves_its_target(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    (run / "report").mkdir()
    (tmp_path / "thesis.png").write_bytes(b"precious")
    (run / "report" / "feeders.png").symlink_to(tmp_path / "thesis.png")
    assert fleet("report", run, "--overwrite").exit_code == 0
    assert (tmp_path / "thesis.png").read_bytes() == b"precious"
    feeders = run / "report" / "feeders.png"
    assert not feeders.is_symlink() and feeders.read_bytes().startswith(PNG_MAGIC)
    names = ["feeders.png", "kpis.png", "network.png", "temperatures.png"]
    assert sorted(p.name for p in (run / "report").iterdir()) == names


@pytest.mark.parametrize("case", ["tail alone", "nothing to draw", "same seed twice", "same folder name"])
def test_report_bad_input_is_one_error_and_exit_2(case, tiny_run, tmp_path):
    if case == "tail alone":
        args, word = [tiny_run, "--tail", "0.5"], "--tail applies only with --comm-vs-reward"
    elif case == "nothing to draw":
        args, word = [tiny_run, "--no-per-run"], "nothing to draw"
    elif case == "same seed twice":
        args, word = [tiny_run, shutil.copytree(tiny_run, tmp_path / "copy"), "--comm-vs-reward"], "same seed (0)"
    else:
        (tmp_path / "a").mkdir()
        args, word = [tiny_run, shutil.copytree(tiny_run, tmp_path / "a" / tiny_run.name)], "same folder name"
    result = fleet("report", *args, "-o", tmp_path / "out")
    assert result.exit_code == 2 and word in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


# --- what the plots show ----------------------------------------------------------------------


def test_rates_per_interval_leave_out_the_last_interval_which_lacks_its_end_publishes():
    # 100 bytes every 5 minutes, counted at the end of each 15-minute interval; the run stops at
    # 60 min before the publish due then, so the last count has 2 of its 3 publishes.
    time_h = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    sent = np.array([0.0, 300.0, 600.0, 900.0, 1100.0])
    t, rate = interval_rates(time_h, sent)
    assert t.tolist() == [0.25, 0.5, 0.75] and rate.tolist() == pytest.approx([1200.0] * 3)
    # Intervals of other lengths give the same rate (a rate, not a count).
    t, rate = interval_rates(np.array([0.0, 0.5, 0.75, 1.0]), np.array([0.0, 600.0, 900.0, 1200.0]))
    assert rate.tolist() == pytest.approx([1200.0, 1200.0])


def test_feeders_of_equal_capacity_share_one_capacity_line():
    sites = [
        {"name": "north", "feeder_kw": 120},
        {"name": "south", "feeder_kw": 120.0},
        {"name": "east", "feeder_kw": 80},
    ]
    assert capacity_groups(sites) == {80.0: ["east"], 120.0: ["north", "south"]}


def test_a_single_seed_claims_no_interval(tiny_run):
    one = comm_vs_reward([(tiny_run, *load_run(tiny_run))], 0.5)
    assert interval_claim(one) == "one seed per variant, no interval"


def test_a_learner_run_gets_a_learning_curve_and_the_thermostat_none(tiny_run, tmp_path):
    _, metrics, _ = load_run(tiny_run)
    assert not has_learning_curve(metrics)  # the rule-based thermostat does not learn
    learning = dict(metrics, **{"losses/value": np.r_[np.nan, np.ones(len(metrics["time_h"]) - 1)]})
    assert has_learning_curve(learning)
    assert plot_learning(learning, "t", tmp_path / "learning.png").read_bytes().startswith(PNG_MAGIC)
