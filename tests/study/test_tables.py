"""A finished study's figures, tables and curves, checked by hand."""

import json

import numpy as np
import pytest
import yaml

from fleet.results import load_run
from fleet.study import load_study
from fleet.study.tables import markdown, table
from fleet.tradeoff import estimate, final_reward, reward_curve


def test_the_reward_curve_adds_up_to_the_reward_of_the_whole_run(tiny_run):
    """Metrics every 15 min of 1-min ticks over 2 h: the first interval holds the ticks at 0..15
    min (16), the next six 15 each, the last the ticks at 106..119 min (14): 120 ticks."""
    scenario, metrics, summary = load_run(tiny_run)
    n = summary["run"]["n_devices"]
    curve = reward_curve(scenario, metrics, n)
    ticks = np.array([16, 15, 15, 15, 15, 15, 15, 14])
    assert len(curve) == len(metrics["time_s"]) - 1 == len(ticks)
    assert (curve * ticks).sum() / ticks.sum() == pytest.approx(final_reward(scenario, metrics, n, tail=1.0), rel=1e-12)


def test_the_table_holds_each_point_over_seeds_and_its_difference_from_its_reference_seed_by_seed(write_study):
    study = load_study(
        write_study(
            {
                "axes": {"topology.kind": ["ring", "complete"]},
                "report": {"reference": "rule-based", "metrics": ["reward"]},
            }
        )
    )
    values = {
        p.name: {seed: {"reward": float(10 * i + seed**2)} for seed in (0, 1)} for i, p in enumerate(study.points)
    }
    doc = table(study, values)
    assert doc["points"]["independent_ring"]["reward"]["mean"] == 20.5 and doc["points"]["independent_ring"]["reward"][
        "per_seed"
    ] == {"0": 20.0, "1": 21.0}
    half = estimate([20.0, 21.0]).ci95_half_width
    assert doc["points"]["independent_ring"]["reward"]["t"] == pytest.approx([20.5 - half, 20.5 + half])
    assert doc["points"]["independent_ring"]["reward"]["bootstrap"] == [20.0, 21.0]
    # independent_ring (values 20, 21) minus rule-based_ring (0, 1): 20 at both seeds, no spread
    assert set(doc["paired"]) == {"independent_ring", "independent_complete"}
    assert doc["paired"]["independent_ring"]["minus"] == "rule-based_ring"
    assert doc["paired"]["independent_complete"]["reward"] == {
        "mean": 20.0,
        "n": 2,
        "t": [20.0, 20.0],
        "bootstrap": [20.0, 20.0],
    }
    text = markdown(json.loads(json.dumps(doc)))
    assert (
        "| independent_ring | 20.50 ± 6.35 |" in text
        and "| independent_complete - rule-based_complete | +20.00 ± 0.00 |" in text
    )


def test_a_pair_of_the_study_file_is_tabulated_seed_by_seed_on_every_axis_label(write_study):
    study = load_study(
        write_study(
            {
                "axes": {"topology.kind": ["ring", "complete"]},
                "report": {"reference": "rule-based", "pairs": [["rule-based", "independent"]], "metrics": ["reward"]},
            }
        )
    )
    values = {
        "rule-based_ring": {0: {"reward": 1.0}, 1: {"reward": 4.0}},
        "rule-based_complete": {0: {"reward": 0.0}, 1: {"reward": 0.0}},
        "independent_ring": {0: {"reward": 3.0}, 1: {"reward": 10.0}},
        "independent_complete": {0: {"reward": 5.0}, 1: {"reward": 5.0}},
    }
    doc = table(study, values)
    ring, complete = doc["pairs"]
    assert (ring["point"], ring["minus"]) == ("rule-based_ring", "independent_ring")
    assert (complete["point"], complete["minus"]) == ("rule-based_complete", "independent_complete")
    # on the ring: 1 - 3 = -2 and 4 - 10 = -6; mean -4, s = sqrt(8), the half-width t(0.975, 1) * s / sqrt(2)
    assert ring["reward"]["mean"] == -4.0 and ring["reward"]["t"] == pytest.approx(
        [-4 - 25.4124, -4 + 25.4124], abs=1e-4
    )
    assert ring["reward"]["bootstrap"] == [-6.0, -2.0] and complete["reward"]["t"] == [-5.0, -5.0]
    assert doc["paired"]["independent_ring"]["reward"]["mean"] == 4.0  # the reference's differences stay
    text = markdown(json.loads(json.dumps(doc)))
    assert "| rule-based_ring - independent_ring | -4.00 ± 25.41 |" in text
    assert text.index("| independent_ring - rule-based_ring |") < text.index("| rule-based_ring - independent_ring |")


def test_a_finished_study_writes_its_tables_curves_and_fleet_reports_plots(local_study):
    results = local_study / "results"
    assert {p.name for p in results.iterdir()} >= {"table.json", "table.md", "curves.png", "marl_eval.json", "report"}
    assert {p.name for p in (results / "report").iterdir()} == {
        "comm_vs_reward.png",
        "comm_vs_reward.csv",
        "comm_vs_reward.json",
        "compare.png",
    }
    doc = json.loads((results / "table.json").read_text())
    run = local_study / "runs" / "independent-seed1"
    scenario, metrics, summary = load_run(run)
    got = doc["points"]["independent"]
    assert got["reward"]["per_seed"]["1"] == final_reward(scenario, metrics, 6, tail=0.5)
    assert got["kpis.peak_kw"]["per_seed"]["1"] == summary["kpis"]["peak_kw"]
    # tail.cost: the cost from the row at 1 h (its ticks: 0..60 min) to the end (ticks to 119 min), per device-day
    start = list(metrics["time_s"]).index(3600.0)
    assert got["tail.cost"]["per_seed"]["1"] == pytest.approx(
        (metrics["kpi/cost"][-1] - metrics["kpi/cost"][start]) / 6 / (59 * 60 / 86400)
    )
    assert yaml.safe_load((run / "scenario.yaml").read_text())["seed"] == 1
