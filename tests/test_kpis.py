"""summary.json's figures: fleet totals and per device-day, each with its unit, and one
definition of the byte figures that the CLI, summary.json and comm_vs_reward share."""

import json

import pytest
import yaml

from fleet.kpis import summary_lines
from fleet.results import execute
from fleet.scenario import load_scenario
from fleet.tradeoff import bytes_sent_per_device_per_day

DEVICES, DAYS = 6, 2 / 24
"""The tiny run: 6 devices for 2 hours."""


@pytest.fixture(scope="module")
def summary(tiny_run) -> dict:
    return json.loads((tiny_run / "summary.json").read_text())


def test_additive_kpis_per_device_day_are_the_totals_over_devices_and_days(summary):
    per_day = summary["kpis_per_device_day"]
    assert set(per_day) == {"energy_kwh", "cost", "discomfort_degh", "feeder_overload_kwh"}  # not peak and ramping
    for key, value in per_day.items():
        assert value == pytest.approx(summary["kpis"][key] / DEVICES / DAYS)
        assert summary["baseline_per_device_day"][key] == pytest.approx(summary["baseline"][key] / DEVICES / DAYS)


def test_every_figure_has_a_unit_and_cost_is_in_the_tariffs_currency(summary, tiny_run, tmp_path):
    units = summary["units"]
    for section in ("kpis", "kpis_per_device_day", "comm", "comm_per_device_day"):
        assert set(units[section]) == set(summary[section]), section
    assert (units["kpis"]["cost"], units["kpis_per_device_day"]["cost"]) == ("EUR", "EUR/device-day")  # the default
    assert (units["kpis"]["discomfort_degh"], units["comm_per_device_day"]["bytes_sent"]) == (
        "°C·h",
        "bytes/device-day",
    )
    raw = yaml.safe_load((tiny_run / "scenario.yaml").read_text())
    raw["tariff"]["currency"] = "USD"
    (tmp_path / "usd.yaml").write_text(yaml.safe_dump(raw))
    _, usd = execute(load_scenario(tmp_path / "usd.yaml", ["horizon=15min"]), tmp_path / "run")
    assert usd["units"]["kpis"]["cost"] == "USD" and usd["units"]["kpis_per_device_day"]["cost"] == "USD/device-day"


def test_bytes_sent_per_device_day_is_one_figure_in_summary_cli_and_comm_vs_reward(summary):
    sent = summary["comm_per_device_day"]["bytes_sent"]
    assert (
        sent == pytest.approx(summary["comm"]["bytes_sent"] / DEVICES / DAYS) == bytes_sent_per_device_per_day(summary)
    )
    assert summary["comm_per_device_day"]["bytes_received"] == pytest.approx(
        summary["comm"]["bytes_received"] / DEVICES / DAYS
    )
    assert "bytes_per_device_per_day" not in summary["comm"]  # sent + received under one name: gone
    assert 0 < summary["comm"]["payload_bytes_sent"] < summary["comm"]["bytes_sent"]  # payload only, once per publish
    comm = next(line for line in summary_lines(summary) if line.startswith("comm:"))
    assert (
        f"{sent / 1024:.1f} KiB sent and {summary['comm_per_device_day']['bytes_received'] / 1024:.1f} KiB received"
        in comm
    )


def test_the_end_of_run_lines_give_each_kpi_per_device_day_and_in_total_with_units(summary):
    lines = summary_lines(summary)
    assert lines[0].split() == ["KPI", "per", "device-day", "fleet", "total", "vs", "rule-based"]
    cost = next(line for line in lines if line.startswith("cost ")).split()
    assert cost[1:5] == [
        f"{summary['kpis_per_device_day']['cost']:.3f}",
        "EUR",
        f"{summary['kpis']['cost']:.3f}",
        "EUR",
    ]
    peak = next(line for line in lines if line.startswith("peak_kw ")).split()
    assert peak[1:4] == ["-", f"{summary['kpis']['peak_kw']:.3f}", "kW"]
