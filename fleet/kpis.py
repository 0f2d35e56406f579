"""The figures of a run's summary.json, each with its unit: fleet totals and per device-day.

summary.json gives every figure twice where both mean something:

- ``kpis`` (and ``baseline``, the rule-based thermostat on the same houses): fleet totals over
  the simulated time, and ``kpis_per_device_day`` (``baseline_per_device_day``): the additive
  ones divided by devices x simulated days, as the study tables give them. Peak and ramping
  describe the fleet's aggregate load and have no per-device figure.
- ``comm``: the byte and message counters (defined in :class:`fleet.net.network.CommStats`):
  bytes and radio time summed over the devices, messages over every endpoint (the cloud
  collector included); ``comm_per_device_day``: the devices' bytes and radio time divided by
  devices x simulated days.

``units`` names the unit of every figure, section by section; costs are in the scenario's
``tariff.currency``. :func:`summary_lines` is the text ``fleet run`` prints at the end.
"""

from __future__ import annotations

from typing import Any

KPI_UNITS = {
    "energy_kwh": "kWh",
    "cost": "{currency}",
    "discomfort_degh": "°C·h",
    "peak_kw": "kW",
    "ramping_kw": "kW",
    "feeder_overload_kwh": "kWh",
}
"""Units of the fleet-total KPIs (``{currency}``: the tariff's)."""
PER_DEVICE_DAY_KPIS = ("energy_kwh", "cost", "discomfort_degh", "feeder_overload_kwh")
"""The KPIs that add up over devices and days."""
COMM_UNITS = {
    "bytes_sent": "bytes",
    "bytes_received": "bytes",
    "payload_bytes_sent": "bytes",
    "messages_sent": "messages",
    "messages_delivered": "messages",
    "messages_dropped": "messages",
    "duplicates": "messages",
    "messages_invalid": "messages",
    "mean_delay_s": "s",
    "radio_s": "s",
}
PER_DEVICE_DAY_COMM = ("bytes_sent", "bytes_received", "payload_bytes_sent", "radio_s")
"""The counters summed over the devices alone, which divide by devices x days."""


def per_device_day(total: float, n_devices: int, simulated_s: float) -> float:
    """``total`` divided by devices x simulated days (a run stopped at 0 s counts 1e-9 s)."""
    return total / n_devices / (max(simulated_s, 1e-9) / 86400.0)


def summary_figures(
    kpis: dict[str, float],
    baseline: dict[str, float] | None,
    comm: dict[str, float | None],
    n_devices: int,
    simulated_s: float,
    currency: str,
) -> dict[str, Any]:
    """The per device-day sections and ``units`` of summary.json, from its fleet totals."""

    def per_day(section: dict, keys: tuple[str, ...]) -> dict[str, float]:
        return {k: per_device_day(section[k], n_devices, simulated_s) for k in keys}

    kpi_units = {k: unit.format(currency=currency) for k, unit in KPI_UNITS.items()}
    out: dict[str, Any] = {"kpis_per_device_day": per_day(kpis, PER_DEVICE_DAY_KPIS)}
    if baseline is not None:
        out["baseline_per_device_day"] = per_day(baseline, PER_DEVICE_DAY_KPIS)
    out["comm_per_device_day"] = per_day(comm, PER_DEVICE_DAY_COMM)
    out["units"] = {
        "kpis": kpi_units,
        "kpis_per_device_day": {k: f"{kpi_units[k]}/device-day" for k in PER_DEVICE_DAY_KPIS},
        "comm": COMM_UNITS,
        "comm_per_device_day": {k: f"{COMM_UNITS[k]}/device-day" for k in PER_DEVICE_DAY_COMM},
    }
    return out


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The end-of-run text: each KPI per device-day and for the fleet, with units and its ratio to
    the rule-based thermostat; the devices' traffic per device-day; the run's speed."""
    units, per_day, ratios = summary["units"], summary["kpis_per_device_day"], summary.get("kpis_vs_baseline", {})
    lines = [f"{'KPI':<20}{'per device-day':>22}{'fleet total':>22}{'vs rule-based':>15}"]
    for key, total in summary["kpis"].items():
        unit, ratio = units["kpis"][key], ratios.get(key)
        daily = f"{per_day[key]:.3f} {unit}" if key in per_day else "-"
        lines.append(f"{key:<20}{daily:>22}{f'{total:.3f} {unit}':>22}{'' if ratio is None else f'{ratio:>15.3f}'}")
    c, daily = summary["comm"], summary["comm_per_device_day"]
    sent, received = daily["bytes_sent"] / 1024, daily["bytes_received"] / 1024
    lines.append(
        f"comm: per device-day {sent:.1f} KiB sent and {received:.1f} KiB received on the air; messages "
        f"{c['messages_sent']:.0f} sent, {c['messages_delivered']:.0f} delivered, {c['messages_dropped']:.0f} dropped"
        + (f", mean delay {c['mean_delay_s'] * 1000:.1f} ms" if c["mean_delay_s"] is not None else "")
    )
    p = summary["perf"]
    lines.append(f"perf: {p['wall_s']:.1f} s wall, {p['device_steps_per_s'] or 0:,.0f} device-steps/s")
    return lines
