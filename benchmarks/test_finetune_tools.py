"""Checks of the study helpers of docs/studies/pretraining.md: the optimum beside a study's table, paired differences.

Run with ``pytest benchmarks -m benchmark``."""

from __future__ import annotations

import json
import math

import pytest
from finetune_diagnosis import summary
from optimum_discount import STUDY_HORIZONS, markdown_rows, study_optimum
from paired_difference import paired, read_table, with_reward

pytestmark = pytest.mark.benchmark

T_975_1 = 12.7062
"""Student's t quantile 0.975 at 1 degree of freedom."""


def test_paired_differences_are_taken_seed_by_seed():
    table = {
        "study": "s",
        "points": {
            "a": {"tail.cost": {"per_seed": {"5": 1.0, "6": 3.0}}},
            "b": {"tail.cost": {"per_seed": {"5": 0.5, "6": 2.0}}},
        },
    }
    d = paired(table, "a", "b")["tail.cost"]
    # differences 0.5 and 1.0: mean 0.75, sample standard deviation 0.25 * sqrt(2)
    assert d["per_seed"] == {"5": 0.5, "6": 1.0}
    assert d["mean"] == pytest.approx(0.75)
    assert d["ci95"] == pytest.approx(T_975_1 * 0.25 * math.sqrt(2) / math.sqrt(2), rel=1e-4)
    with pytest.raises(SystemExit, match="'c' is no point of study s; its points: a, b"):
        paired(table, "c", "b")
    other = {"study": "t", "points": {"x": {"tail.cost": {"per_seed": {"5": 2.0, "6": 1.0}}}}}
    assert paired(table, "a", "x", other)["tail.cost"]["per_seed"] == {"5": -1.0, "6": 2.0}
    # a figure only one of the two studies tabulates is left out
    table["points"]["a"]["bytes_sent"] = {"per_seed": {"5": 1.0, "6": 1.0}}
    assert list(paired(table, "a", "x", other)) == ["tail.cost"]
    with pytest.raises(SystemExit, match="'b' is no point of study t; its points: x"):
        paired(table, "a", "b", other)
    table["points"]["a"]["bytes"] = {"per_seed": {"5": 9.0, "6": 9.0}}  # a figure the other study did not report
    assert set(paired(table, "a", "x", other)) == {"tail.cost"}


def test_a_reward_at_the_scenarios_prices_is_made_of_the_tail_figures():
    def seeds(a: float, b: float) -> dict:
        return {"per_seed": {"5": a, "6": b}}

    table = {
        "study": "s",
        "points": {
            "limit": {
                "tail.cost": seeds(9.0, 8.0),
                "tail.discomfort_degh": seeds(2.0, 4.0),
                "tail.feeder_overload_kwh": seeds(0.5, 0.0),
            },
            "bytes-only": {"bytes_sent": seeds(1.0, 1.0)},
        },
    }
    priced = with_reward(table, 3.0, 2.0)
    # -(9 + 3 x 2 + 2 x 0.5) = -16 and -(8 + 3 x 4 + 0) = -20
    assert priced["points"]["limit"]["reward_at_prices"]["per_seed"] == {"5": -16.0, "6": -20.0}
    assert "reward_at_prices" not in priced["points"]["bytes-only"]
    assert "reward_at_prices" not in table["points"]["limit"]


def test_the_optimum_of_each_seed_beside_a_studys_reference(tmp_path):
    study = tmp_path / "tiny.yaml"
    study.write_text(
        "version: 1\nname: tiny\nscenario: thermostats-small-v1\n"
        "set: {horizon: 3d, control_period: 15min, 'fleet.sites[0].devices': 3, 'fleet.sites[1].devices': 3, "
        "topology.degree: 2}\n"
        "variants:\n  rule-based: {learner.name: rule-based-v1}\n"
        "seeds: [1, 2]\nreport: {reference: rule-based, tail: 0.3333333333333333, metrics: [tail.cost]}\n"
    )
    reference = {
        "tail.cost": {"per_seed": {"1": 9.0, "2": 10.0}},
        "tail.discomfort_degh": {"per_seed": {"1": 5.0, "2": 6.0}},
    }
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"points": {"rule-based": reference}}))
    out = study_optimum(study, table)
    assert out["tail_days"] == pytest.approx(1.0) and list(out["optimum"]) == list(STUDY_HORIZONS)
    for row in out["optimum"].values():
        assert sorted(row["per_seed"]) == [1, 2]
        for name, key in (
            ("tail.cost", "cost_per_device_day"),
            ("tail.discomfort_degh", "discomfort_degh_per_device_day"),
        ):
            minus = [row["per_seed"][s][key] - reference[name]["per_seed"][str(s)] for s in (1, 2)]
            assert row["minus_reference"][key]["mean"] == pytest.approx(sum(minus) / 2)
            assert row[key]["mean"] == pytest.approx(sum(row["per_seed"][s][key] for s in (1, 2)) / 2)
    undiscounted, discounted = out["optimum"].values()
    assert undiscounted["per_seed"][1]["gamma_per_tick"] == 1.0
    assert discounted["per_seed"][1]["gamma_per_tick"] == pytest.approx(math.exp(-0.25 / 4.87))  # 15 min at 4.87 h
    rows = markdown_rows(out)
    assert len(rows) == 2 and rows[0].startswith("| optimum, not discounted | ") and rows[0].count("|") == 6


def test_the_diagnosis_summary_subtracts_the_frozen_greedy_tail_seed_by_seed():
    def row(cost, degh, **extra):
        return {"cost": cost, "discomfort_degh": degh, **extra}

    tuned = {"actor_moved": 0.01, "greedy_changed": 0.1}
    seeds = {
        "0": {
            "frozen": {"greedy": row(8.0, 0.2), "sample": row(8.1, 0.4)},
            "ft": {"greedy": row(7.9, 0.3, **tuned), "sample": row(8.0, 0.3)},
        },
        "1": {
            "frozen": {"greedy": row(9.0, 0.5), "sample": row(9.3, 0.5)},
            "ft": {"greedy": row(8.8, 0.5, **{**tuned, "greedy_changed": 0.3}), "sample": row(9.0, 0.6)},
        },
    }
    rows = summary(seeds)
    # frozen sampled minus frozen greedy: cost 0.1 and 0.3 (mean 0.2, half-width 12.706 * 0.1), discomfort 0.2 and 0
    assert rows[1] == f"| frozen | sample | +0.200 ± {T_975_1 * 0.1:.3f} | +0.100 ± {T_975_1 * 0.1:.3f} |  |  |"
    # fine-tuned greedy: cost -0.1 and -0.2, discomfort +0.1 and 0; greedy action changed on 10 % and 30 %
    assert rows[2] == (
        f"| ft | greedy | -0.150 ± {T_975_1 * 0.05:.3f} | +0.050 ± {T_975_1 * 0.05:.3f} "
        f"| 20.0 ± {100 * T_975_1 * 0.1:.1f} % | 0.0100 |"
    )


def test_a_table_is_read_from_a_study_folder_or_a_table_file_and_anything_else_is_named(tmp_path):
    (tmp_path / "study" / "results").mkdir(parents=True)
    table = {"study": "s", "points": {}}
    (tmp_path / "study" / "results" / "table.json").write_text(json.dumps(table))
    assert read_table(tmp_path / "study") == table == read_table(tmp_path / "study" / "results" / "table.json")
    with pytest.raises(SystemExit, match="nowhere: neither a finished study's folder nor a table.json"):
        read_table(tmp_path / "nowhere")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SystemExit, match="bad.json: neither"):
        read_table(tmp_path / "bad.json")
